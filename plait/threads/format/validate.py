"""Strict format validator: every error names the offending token position and the fix.

Checks (on top of the lenient parse): stray tags outside blocks, nested `<Parallel>`, unclosed
blocks / outline lists / items, tags inside outlines or threads, outline numbering 1..n without
gaps or duplicates, thread count and numbers matching the outlines, the outline limit, and the
canonical whitespace of `format.py` (`<Thread>\\n{i}: ...\\n</Thread>`, threads touching, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.parser import Block, Item, Seq, parse

_OUTLINE_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)*): \S")
_THREAD_RE = re.compile(r"^\n([0-9]+(?:\.[0-9]+)*): \S")


@dataclass(slots=True, frozen=True, kw_only=True)
class FormatError:
    """One violation: `pos` is an index into the full token list."""

    pos: int
    code: str  # stable short name, e.g. "numbering-gap"
    message: str


@dataclass(slots=True, kw_only=True)
class _Ctx:
    tokens: list[int]
    fmt: ThreadFormat
    errors: list[FormatError]

    def add(self, pos: int, code: str, message: str) -> None:
        self.errors.append(FormatError(pos=pos, code=code, message=message))

    def text(self, a: int, b: int) -> str:
        return self.fmt.decode(self.tokens[a:b])

    def tags_in(self, a: int, b: int, where: str) -> None:
        for k in range(a, b):
            name = self.fmt.tags.name(self.tokens[k])
            if name is not None:
                code = "nested" if name == "<Parallel>" else "tag-inside"
                self.add(k, code, f"{name} inside {where}; remove it (no tags or nesting allowed)")

    def glue(self, a: int, b: int, want: str, where: str) -> None:
        self.tags_in(a, b, where)
        got = self.text(a, b)
        if got != want:
            self.add(a, "whitespace", f"{where}: expected {want!r}, got {got!r}")


def _check_items(c: _Ctx, items: list[Item], kind: str, pattern: re.Pattern[str]) -> list[str]:
    numbers = []
    for idx, it in enumerate(items, 1):
        a, b = it.body
        if not it.closed:
            c.add(it.end, f"unclosed-{kind}", f"{kind} {idx} is not closed; add </{kind.title()}>")
        c.tags_in(a, b, f"{kind} {idx}")
        text = c.text(a, b)
        m = pattern.match(text)
        if m is None:
            want = "'N: text'" if kind == "outline" else "'\\nN: text'"
            c.add(a, f"{kind}-format", f"{kind} {idx} must start with {want}, got {text[:20]!r}")
        if kind == "thread" and it.closed and not text.endswith("\n"):
            c.add(b, "whitespace", f"thread {idx} must end with '\\n' before </Thread>")
        numbers.append(it.number or "?")
    return numbers


def _check_numbers(c: _Ctx, block: Block, outline_nums: list[str], thread_nums: list[str]) -> None:
    seen: set[str] = set()
    for k, (it, got) in enumerate(zip(block.outlines, outline_nums), 1):
        if got == str(k):
            seen.add(got)
            continue
        if got in seen:
            c.add(it.start, "numbering-duplicate", f"outline number {got} repeats; renumber 1..n")
        else:
            c.add(it.start, "numbering-gap", f"outline {k} is numbered {got}; number them 1..n")
        break
    if len(block.threads) != len(block.outlines):
        pos = block.threads[-1].end if block.threads else block.end
        c.add(
            pos, "count-mismatch",
            f"{len(block.outlines)} outlines but {len(block.threads)} threads; "
            "write one thread per outline",
        )  # fmt: skip
    for it, want, got in zip(block.threads, outline_nums, thread_nums):
        if want != got:
            c.add(it.start, "thread-number", f"thread numbered {got} where outline says {want}")


def _check_block(c: _Ctx, b: Block, max_outlines: int, min_threads: int) -> None:
    if not b.closed:
        c.add(b.end, "unclosed-block", "block is not closed; end it with '\\n</Parallel>'")
    if b.outlines_span is None:
        c.add(b.start, "no-outlines", "block has no <Outlines>; write outlines before threads")
        return
    o0, o1 = b.outlines_span
    c.glue(b.start + 1, o0, "\n", "between <Parallel> and <Outlines>")
    if not b.outlines_closed:
        c.add(o1, "unclosed-outlines", "outline list is not closed; add </Outlines>")
    prev = o0 + 1
    for it in b.outlines:
        c.glue(prev, it.start, "\n", "before an <Outline>")
        prev = it.end
    c.glue(prev, o1 - 1 if b.outlines_closed else o1, "\n", "before </Outlines>")
    if len(b.outlines) > max_outlines:
        c.add(o0, "too-many-outlines", f"{len(b.outlines)} outlines > limit {max_outlines}")
    prev = o1
    for k, it in enumerate(b.threads):
        c.glue(prev, it.start, "\n" if k == 0 else "", "before a <Thread>")
        prev = it.end
    end = b.end - 1 if b.closed else b.end
    if b.threads and b.closed:
        c.glue(prev, end, "\n", "between the last </Thread> and </Parallel>")
    if len(b.threads) < min_threads:
        c.add(b.start, "too-few-threads", f"{len(b.threads)} threads < minimum {min_threads}")
    on = _check_items(c, b.outlines, "outline", _OUTLINE_RE)
    tn = _check_items(c, b.threads, "thread", _THREAD_RE)
    _check_numbers(c, b, on, tn)


def validate(
    tokens: list[int],
    fmt: ThreadFormat,
    *,
    prompt_len: int = 0,
    max_outlines: int = 50,
    min_threads: int = 1,
) -> list[FormatError]:
    """All format violations of `tokens[prompt_len:]`, sorted by position (empty = valid).

    An id outside the vocabulary (`fmt.vocab_size`) is a `bad-token` error, reported alone: text
    cannot be decoded around it.
    """
    bad = fmt.out_of_vocabulary(list(tokens))
    if bad is not None:
        limit = "" if fmt.vocab_size is None else f" [0, {fmt.vocab_size})"
        return [FormatError(pos=bad, code="bad-token", message=f"token id {tokens[bad]!r} is "
                            f"outside the vocabulary{limit}; was it made with another tokenizer?")]  # fmt: skip
    tree = parse(tokens, fmt, prompt_len=prompt_len)
    c = _Ctx(tokens=tree.tokens, fmt=fmt, errors=[])
    for node in tree.nodes:
        if isinstance(node, Seq):
            for k in range(node.start, node.end):
                name = fmt.tags.name(c.tokens[k])
                if name is not None:
                    c.add(k, "stray-tag", f"{name} outside a <Parallel> block; remove it")
        else:
            _check_block(c, node, max_outlines, min_threads)
    return sorted(c.errors, key=lambda e: e.pos)


def explain(tokens: list[int], fmt: ThreadFormat, err: FormatError, width: int = 12) -> str:
    """`err` as one line with a snippet around the position, marked with '>>'."""
    if err.code == "bad-token":
        return f"token {err.pos} [{err.code}] {err.message}"
    before = fmt.decode(tokens[max(0, err.pos - width) : err.pos])
    after = fmt.decode(tokens[err.pos : err.pos + width])
    return f"token {err.pos} [{err.code}] {err.message}: ...{before!r} >> {after!r}..."


def check(tokens: list[int], fmt: ThreadFormat, **kwargs: int) -> None:
    """Raise ValueError listing every violation (with snippets) if the trajectory is invalid."""
    errors = validate(tokens, fmt, **kwargs)
    if errors:
        lines = "\n".join(explain(tokens, fmt, e) for e in errors)
        raise ValueError(f"{len(errors)} format error(s):\n{lines}")
