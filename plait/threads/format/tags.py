"""ThreadWeaver tags as single special tokens, and their embedding initialisation.

`add_thread_tokens(tokenizer)` adds the eight format tags (`<Parallel>`, `<Outlines>`, `<Outline>`,
`<Thread>` and their closers) to any Hugging Face tokenizer as special tokens and checks that each
encodes to exactly one id. `init_tag_embeddings(tokenizer, target)` sets each new embedding row (and
the untied LM-head row) to the mean of the embeddings of the tag's *name* tokenised as ordinary text
("Parallel", "/Parallel", ...). `target` is a transformers model or a `(V, D)` weight tensor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PARALLEL, PARALLEL_END = "<Parallel>", "</Parallel>"
OUTLINES, OUTLINES_END = "<Outlines>", "</Outlines>"
OUTLINE, OUTLINE_END = "<Outline>", "</Outline>"
THREAD, THREAD_END = "<Thread>", "</Thread>"

TAGS: tuple[str, ...] = (
    PARALLEL, PARALLEL_END, OUTLINES, OUTLINES_END, OUTLINE, OUTLINE_END, THREAD, THREAD_END
)  # fmt: skip
# Multiverse-era tags some datasets still carry; added only on request (`legacy=True`).
LEGACY_TAGS: tuple[str, ...] = ("<Think>", "</Think>", "<Conclusion>", "</Conclusion>")


def tag_name(tag: str) -> str:
    """The text whose token embeddings initialise `tag`: "<Parallel>" -> "Parallel"."""
    if not (tag.startswith("<") and tag.endswith(">")) or len(tag) < 3:
        raise ValueError(f"tag must look like '<Name>' or '</Name>', got {tag!r}")
    return tag[1:-1]


def add_thread_tokens(tokenizer: Any, *, legacy: bool = False) -> dict[str, int]:
    """Add the tags as special tokens (idempotent) and return `{tag: id}`.

    Raises:
        ValueError: if a tag does not encode to exactly one id afterwards (e.g. a tokenizer that
            normalises special tokens away); the message names the tag.
    """
    from tokenizers import AddedToken

    tags = TAGS + (LEGACY_TAGS if legacy else ())
    new = [t for t in tags if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_tokens(
            [AddedToken(t, special=True, normalized=False) for t in new], special_tokens=True
        )
    ids: dict[str, int] = {}
    for tag in tags:
        enc = tokenizer.encode(tag, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(
                f"tag {tag!r} encodes to {len(enc)} ids {enc} after adding it; the tokenizer must "
                "keep added special tokens whole (do not normalise them)"
            )
        ids[tag] = int(enc[0])
    return ids


def _name_token_ids(tokenizer: Any, tag: str, limit: int) -> list[int]:
    ids = [i for i in tokenizer.encode(tag_name(tag), add_special_tokens=False) if i < limit]
    if not ids:
        raise ValueError(
            f"the name of {tag!r} has no ordinary tokens below id {limit}; initialise this row "
            "by hand or pass a tokenizer whose base vocabulary covers the name"
        )
    return ids


def _init_rows(weight: torch.Tensor, tokenizer: Any, tag_ids: dict[str, int], base: int) -> None:
    import torch

    with torch.no_grad():
        for tag, tid in tag_ids.items():
            src = _name_token_ids(tokenizer, tag, base)
            weight[tid] = weight[src].float().mean(dim=0).to(weight.dtype)  # (D,)


def init_tag_embeddings(
    tokenizer: Any,
    target: Any,
    *,
    tag_ids: dict[str, int] | None = None,
    pad_to_multiple_of: int = 64,
) -> Any:
    """Initialise the tag rows of an embedding / LM-head weight, or of a transformers model.

    Args:
        tokenizer: a tokenizer that already holds the tags (see `add_thread_tokens`).
        target: a transformers `PreTrainedModel` (resized to `len(tokenizer)` rounded up to
            `pad_to_multiple_of`, input embeddings and an untied LM head initialised), or a
            `(V, D)` tensor. A tensor with fewer than `max(tag id) + 1` rows is returned as a new
            grown tensor (extra rows zero before initialisation); otherwise it is edited in place.
        tag_ids: `{tag: id}`; defaults to the eight format tags looked up in the tokenizer.
        pad_to_multiple_of: vocabulary padding for models.

    Returns:
        The model, or the (possibly new) weight tensor.
    """
    import torch

    if tag_ids is None:
        vocab = tokenizer.get_vocab()
        missing = [t for t in TAGS if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks {missing}; call add_thread_tokens(tokenizer) first")
        tag_ids = {t: int(vocab[t]) for t in TAGS}
    base = min(tag_ids.values())  # name tokens must be ordinary (older) ids

    if isinstance(target, torch.Tensor):
        need = max(tag_ids.values()) + 1
        weight = target
        if weight.shape[0] < need:
            grown = weight.new_zeros((need, weight.shape[1]))  # (V_new, D)
            grown[: weight.shape[0]] = weight.detach()
            weight = grown
        _init_rows(weight, tokenizer, tag_ids, base)
        return weight

    if not hasattr(target, "get_input_embeddings"):
        raise TypeError(
            f"target must be a torch.Tensor or a transformers model, got {type(target).__name__}"
        )
    model = target
    model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=pad_to_multiple_of)
    emb = model.get_input_embeddings().weight  # (V, D)
    _init_rows(emb, tokenizer, tag_ids, base)
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != emb.data_ptr():
        _init_rows(head.weight, tokenizer, tag_ids, base)
    return model
