"""Initialising the embedding rows of the ThreadWeaver tags (as the release does).

`init_tag_embeddings(tokenizer, target)` sets each tag's embedding row (and the untied LM-head row)
to the mean of the embeddings of the tag's *name* tokenised as ordinary text ("Parallel",
"/Parallel", ...). `target` is a transformers model or a `(V, D)` weight tensor. Add the tags to
the tokenizer first (`plait.threads.format.tags.add_thread_tokens`).
"""

from __future__ import annotations

from typing import Any

import torch

from plait.threads.format.tags import TAGS, tag_name


def _name_token_ids(tokenizer: Any, tag: str, limit: int) -> list[int]:
    ids = [i for i in tokenizer.encode(tag_name(tag), add_special_tokens=False) if i < limit]
    if not ids:
        raise ValueError(
            f"the name of {tag!r} has no ordinary tokens below id {limit}; initialise this row "
            "by hand or pass a tokenizer whose base vocabulary covers the name"
        )
    return ids


def _init_rows(weight: torch.Tensor, tokenizer: Any, tag_ids: dict[str, int], base: int) -> None:
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
