"""ThreadWeaver tags as single special tokens.

`add_thread_tokens(tokenizer)` adds the eight format tags (`<Parallel>`, `<Outlines>`, `<Outline>`,
`<Thread>` and their closers) to any Hugging Face tokenizer as special tokens and checks that each
encodes to exactly one id. `tag_name(tag)` is the text whose embeddings initialise a tag's row
(`plait.threads.training.tag_embeddings`).
"""

from __future__ import annotations

from typing import Any

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
