"""Token ids -> segment tree: sequential spans and parallel blocks (outlines, threads).

The parser is lenient, so metrics work on any model output; `validate.py` is the strict check.
Rules: a block starts at `<Parallel>` and ends after `</Parallel>`, or (unclosed) at the first
non-whitespace text after its threads, or at the end. Inside a block `<Outlines>..</Outlines>`
holds `<Outline>` items and each `<Thread>` runs to `</Thread>` (unclosed: to the next `<Thread>`,
`</Parallel>` or the end). Stray or nested tags are literal text of the span that holds them.
All spans are half-open `[start, end)` indices into the full token list (prompt included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.lenient import normalize


@dataclass(slots=True, kw_only=True)
class Item:
    """An `<Outline>` or `<Thread>`: tokens[start] is the opening tag."""

    start: int
    end: int  # after the closing tag, or where the unclosed item was cut
    closed: bool
    number: str | None  # the "N" of "N:" at the start of the body, if any

    @property
    def body(self) -> tuple[int, int]:
        """Span strictly between the wrapper tags."""
        return self.start + 1, self.end - 1 if self.closed else self.end

    @property
    def body_len(self) -> int:
        a, b = self.body
        return b - a


@dataclass(slots=True, kw_only=True)
class Seq:
    """Sequential text outside any block."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass(slots=True, kw_only=True)
class Block:
    """One `<Parallel>` block."""

    start: int  # index of <Parallel>
    end: int
    closed: bool  # ends with </Parallel>
    outlines_span: tuple[int, int] | None = None  # <Outlines> .. after </Outlines> (or cut)
    outlines_closed: bool = False
    outlines: list[Item] = field(default_factory=list)
    threads: list[Item] = field(default_factory=list)

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def thread_body_tokens(self) -> int:
        return sum(t.body_len for t in self.threads)

    @property
    def longest_thread(self) -> int:
        return max((t.body_len for t in self.threads), default=0)

    @property
    def sequential_tokens(self) -> int:
        """Block tokens outside thread bodies: tags, outlines, wrappers, glue whitespace."""
        return len(self) - self.thread_body_tokens


@dataclass(slots=True, kw_only=True)
class SegmentTree:
    """A parsed trajectory: `nodes` cover tokens[prompt_len:] in order, without gaps."""

    tokens: list[int]
    prompt_len: int
    nodes: list[Seq | Block]

    @property
    def blocks(self) -> list[Block]:
        return [n for n in self.nodes if isinstance(n, Block)]

    @property
    def response_len(self) -> int:
        return len(self.tokens) - self.prompt_len


def _scan_item(tokens: list[int], i: int, close: int, stops: frozenset[int]) -> tuple[int, bool]:
    """From an opening tag at i, return (end, closed)."""
    k = i + 1
    while k < len(tokens) and tokens[k] != close and tokens[k] not in stops:
        k += 1
    if k < len(tokens) and tokens[k] == close:
        return k + 1, True
    return k, False


def _parse_block(tokens: list[int], i: int, fmt: ThreadFormat) -> Block:
    tg, n = fmt.tags, len(tokens)
    block = Block(start=i, end=n, closed=False)
    thread_stops = frozenset({tg.thread, tg.parallel_end})
    outline_stops = frozenset({tg.outline, tg.outlines_end, tg.parallel_end, tg.thread})
    j = i + 1
    while j < n:
        t = tokens[j]
        if t == tg.parallel_end:
            block.end, block.closed = j + 1, True
            return block
        if t == tg.outlines and block.outlines_span is None and not block.threads:
            o, k = j, j + 1
            while k < n and tokens[k] not in (tg.outlines_end, tg.parallel_end, tg.thread):
                if tokens[k] == tg.outline:
                    end, closed = _scan_item(tokens, k, tg.outline_end, outline_stops)
                    num = fmt.item_number(tokens[k + 1 : end])
                    block.outlines.append(Item(start=k, end=end, closed=closed, number=num))
                    k = end
                else:
                    k += 1
            block.outlines_closed = k < n and tokens[k] == tg.outlines_end
            j = k + 1 if block.outlines_closed else k
            block.outlines_span = (o, j)
            continue
        if t == tg.thread:
            end, closed = _scan_item(tokens, j, tg.thread_end, thread_stops)
            num = fmt.item_number(tokens[j + 1 : end])
            block.threads.append(Item(start=j, end=end, closed=closed, number=num))
            j = end
            continue
        if block.threads and not fmt.is_tag(t) and not fmt.is_space(t):
            block.end = j  # text after the threads with no </Parallel>: the block was cut
            return block
        j += 1
    return block


def parse(
    tokens: list[int], fmt: ThreadFormat, *, prompt_len: int = 0, lenient: bool = False
) -> SegmentTree:
    """Parse `tokens[prompt_len:]` (the response) into a `SegmentTree`.

    Args:
        tokens: prompt + response ids.
        fmt: the format (tag ids and decoder).
        prompt_len: number of leading prompt tokens, never parsed.
        lenient: first normalise the variants other pipelines write (see `lenient.py`); the
            tree's `tokens` (and its spans) are then the normalised ones.
    """
    if not 0 <= prompt_len <= len(tokens):
        raise ValueError(f"prompt_len must be in [0, {len(tokens)}], got {prompt_len}")
    tokens = normalize(tokens, fmt, prompt_len=prompt_len).tokens if lenient else list(tokens)
    nodes: list[Seq | Block] = []
    seq_start = i = prompt_len
    while i < len(tokens):
        if tokens[i] == fmt.tags.parallel:
            if i > seq_start:
                nodes.append(Seq(start=seq_start, end=i))
            block = _parse_block(tokens, i, fmt)
            nodes.append(block)
            i = seq_start = block.end
        else:
            i += 1
    if len(tokens) > seq_start:
        nodes.append(Seq(start=seq_start, end=len(tokens)))
    return SegmentTree(tokens=tokens, prompt_len=prompt_len, nodes=nodes)
