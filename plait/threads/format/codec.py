"""The parallel format bound to a tokenizer: tag ids, text <-> ids, canonical pieces.

`ThreadFormat` is what the parser, validator, units extractor, orchestrator and metrics share. It
holds the tag ids and an `encode` (text, tags included, -> ids) / `decode` pair. Build one with
`ThreadFormat.from_tokenizer(hf_tokenizer)` or, for tests and synthetic tasks with no tokenizer,
`ThreadFormat.char_level()` (one id per UTF-8 byte, tags at 256..263, EOS 264).

Canonical block (whitespace included; `\\n` is a newline):
    <Parallel>\\n<Outlines>\\n<Outline>1: plan</Outline>\\n<Outline>2: plan</Outline>\\n</Outlines>\\n
    <Thread>\\n1: body\\n</Thread><Thread>\\n2: body\\n</Thread>\\n</Parallel>
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from plait.threads.format import tags as T

NUMBER_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)*)\s*:")  # "1:", " 2.1 :" at an item's start


@dataclass(slots=True, frozen=True, kw_only=True)
class TagIds:
    """Token ids of the eight format tags."""

    parallel: int
    parallel_end: int
    outlines: int
    outlines_end: int
    outline: int
    outline_end: int
    thread: int
    thread_end: int

    @classmethod
    def from_mapping(cls, ids: dict[str, int]) -> TagIds:
        missing = [t for t in T.TAGS if t not in ids]
        if missing:
            raise ValueError(f"tag ids missing for {missing}; call add_thread_tokens first")
        return cls(
            parallel=ids[T.PARALLEL], parallel_end=ids[T.PARALLEL_END],
            outlines=ids[T.OUTLINES], outlines_end=ids[T.OUTLINES_END],
            outline=ids[T.OUTLINE], outline_end=ids[T.OUTLINE_END],
            thread=ids[T.THREAD], thread_end=ids[T.THREAD_END],
        )  # fmt: skip

    def all(self) -> frozenset[int]:
        return frozenset(
            (self.parallel, self.parallel_end, self.outlines, self.outlines_end,
             self.outline, self.outline_end, self.thread, self.thread_end)
        )  # fmt: skip

    def name(self, tok: int) -> str | None:
        """The tag string for `tok`, or None if it is not a tag."""
        for tag, attr in zip(T.TAGS, _ATTRS):
            if getattr(self, attr) == tok:
                return tag
        return None


_ATTRS = ("parallel", "parallel_end", "outlines", "outlines_end",
          "outline", "outline_end", "thread", "thread_end")  # fmt: skip


class CharTokenizer:
    """A tokenizer with no training: one id per UTF-8 byte, tags at 256..263, EOS at 264."""

    eos_id = 264
    vocab_size = 265

    def __init__(self) -> None:
        self.tag_ids = {tag: 256 + i for i, tag in enumerate(T.TAGS)}
        self._split = re.compile("(" + "|".join(re.escape(t) for t in T.TAGS) + ")")

    def encode(self, text: str) -> list[int]:
        out: list[int] = []
        for piece in self._split.split(text):
            if piece in self.tag_ids:
                out.append(self.tag_ids[piece])
            elif piece:
                out.extend(piece.encode("utf-8"))
        return out

    def decode(self, ids: list[int]) -> str:
        names = {v: k for k, v in self.tag_ids.items()}
        buf, out = bytearray(), []
        for i in ids:
            if i < 256:
                buf.append(i)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf = bytearray()
            out.append(names.get(i, "<|eos|>" if i == self.eos_id else f"<|{i}|>"))
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)


@dataclass(slots=True, kw_only=True)
class ThreadFormat:
    """Tag ids plus the text codec; everything token-level in plait.threads takes one."""

    tags: TagIds
    encode: Callable[[str], list[int]]  # text (tags allowed) -> ids, no BOS/EOS added
    decode: Callable[[list[int]], str]  # ids -> text, tags rendered as their strings
    eos_ids: tuple[int, ...] = ()  # end-of-sequence ids of the model
    vocab_size: int | None = None  # valid ids are [0, vocab_size); None = not checked
    _space: dict[int, bool] = field(default_factory=dict, repr=False)
    _headers: dict[tuple[str, bool], list[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, add_tags: bool = True) -> ThreadFormat:
        """Bind to a Hugging Face tokenizer (adding the tags as special tokens unless present)."""
        ids = (
            T.add_thread_tokens(tokenizer)
            if add_tags
            else {t: tokenizer.convert_tokens_to_ids(t) for t in T.TAGS}
        )
        eos = tokenizer.eos_token_id
        return cls(
            tags=TagIds.from_mapping(ids),
            encode=lambda s: list(tokenizer.encode(s, add_special_tokens=False)),
            decode=lambda x: tokenizer.decode(list(x), skip_special_tokens=False),
            eos_ids=() if eos is None else (int(eos),),
            vocab_size=len(tokenizer),
        )

    @classmethod
    def char_level(cls) -> ThreadFormat:
        """A format over `CharTokenizer` (tests, synthetic tasks)."""
        tok = CharTokenizer()
        return cls(
            tags=TagIds.from_mapping(tok.tag_ids),
            encode=tok.encode,
            decode=tok.decode,
            eos_ids=(tok.eos_id,),
            vocab_size=tok.vocab_size,
        )

    def out_of_vocabulary(self, tokens: list[int]) -> int | None:
        """Index of the first id outside [0, vocab_size) (or not an int), None if all are fine."""
        limit = self.vocab_size
        if not tokens:
            return None
        if set(map(type, tokens)) == {int}:  # the common case, checked at C speed
            lo, hi = min(tokens), max(tokens)
            if lo >= 0 and (limit is None or hi < limit):
                return None
        for k, tok in enumerate(tokens):
            if type(tok) is not int or tok < 0 or (limit is not None and tok >= limit):
                return k
        return None  # pragma: no cover - the fast path accepts every list the loop accepts

    def is_tag(self, tok: int) -> bool:
        return tok in self.tags.all()

    def is_space(self, tok: int) -> bool:
        """True for a non-tag token that decodes to whitespace only."""
        hit = self._space.get(tok)
        if hit is None:
            hit = (
                not self.is_tag(tok)
                and tok not in self.eos_ids
                and self.decode([tok]).strip() == ""
            )
            self._space[tok] = hit
        return hit

    def thread_header(self, number: str, *, leading_newline: bool) -> list[int]:
        """`[\\n]<Thread>\\n{number}:` as ids: the orchestrator's thread request suffix."""
        key = (number, leading_newline)
        if key not in self._headers:
            pre = self.newline() if leading_newline else []
            self._headers[key] = pre + [self.tags.thread] + self.encode(f"\n{number}:")
        return list(self._headers[key])

    def newline(self) -> list[int]:
        return self.encode("\n")

    def item_number(self, body: list[int]) -> str | None:
        """The `N` of an outline/thread body starting with `N:` (after optional whitespace)."""
        m = NUMBER_RE.match(self.decode(body[:16]))
        return m.group(1) if m else None
