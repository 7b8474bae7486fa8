"""Every (context, completion) unit the orchestrator issues for a trajectory, and its loss mask.

`extract_units(token_ids, fmt, prompt_len=P)` returns, in order:
  1. the full-trajectory unit (prompt -> whole response; keeps the plain AR mode trained);
  2. per sequential phase: context = everything before it, completion = up to `</Outlines>`
     (or to the end);
  3. per thread i of a forked block: context = text up to `</Outlines>` + `\\n<Thread>\\n{i}:`,
     completion = the body up to and including `</Thread>`.
These contexts are exactly the orchestrator's request contexts (tested).

`Unit.generated` is the loss mask: True on the completion tokens the model writes itself on that
path. In the calls (seq and thread units) the tokens the orchestrator inserts are False: thread
headers, the newline before the first thread, the join newline, forced `</Thread>`/`</Parallel>`.
On the full-trajectory unit the headers and join newlines are True (`header_loss=True`): there
the model writes them itself, as it must once the orchestrator stops forking (`max_blocks`) and
decodes sequentially. Thread 1's header lies on the full path, so it is trained there; the
`{i}:` of a sibling thread i >= 2 exists only in that thread's context and carries no loss.
Forced closers carry no loss anywhere (they end a cut thread, not the model's text).

Without the orchestrator's mask (`inserted=None`) the structural tokens are inferred and every
block with a closed `<Outlines>` list and a thread is taken as forked; forced closers cannot be
told apart from model output then, so pass `ThreadRun.inserted` when you have it. With the mask,
a block whose first `<Thread>` the model wrote itself (AR mode) gets no thread units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.parser import Block, Item, parse


@dataclass(slots=True, kw_only=True)
class Unit:
    """One training unit: the loss goes on completion tokens with `generated` True."""

    context: list[int]
    completion: list[int]
    generated: list[bool]  # one per completion token
    kind: Literal["full", "seq", "thread"]
    block: int | None = None  # block index for thread units
    thread: str | None = None  # thread number for thread units
    span: tuple[int, int] = (0, 0)  # where the completion's tokens sit in the merged trajectory

    def __post_init__(self) -> None:
        if len(self.generated) != len(self.completion):
            raise ValueError("generated must have one flag per completion token")


def header_len(tokens: list[int], item: Item, fmt: ThreadFormat) -> int:
    """Tokens of `<Thread>\\n{i}:` at the start of a thread (1 if no number could be read)."""
    if item.number is not None:
        want = fmt.encode(f"\n{item.number}:")
        if tokens[item.start + 1 : item.start + 1 + len(want)] == want:
            return 1 + len(want)
        text = ""
        for k in range(item.start + 1, item.body[1]):  # non-canonical tokenisation
            text += fmt.decode([tokens[k]])
            if ":" in text:
                return k - item.start + 1
    return 1


def structural_inserted(
    tokens: list[int],
    fmt: ThreadFormat,
    prompt_len: int,
    inserted: list[bool] | None = None,
) -> list[bool]:
    """Per response token: True for the header and join tokens of every forked block.

    Those are the newline before thread 1, each `<Thread>\\n{i}:` and the join newline: what the
    orchestrator inserts when it forks (forced closers are not structural). With the
    orchestrator's `inserted` mask, a block counts as forked only if its first `<Thread>` was
    inserted (a block the model wrote itself in AR mode is not); without it, every block with a
    closed outline list and a thread counts.
    """
    return _structural(tokens, fmt, prompt_len, forked_blocks(tokens, fmt, prompt_len, inserted))


def _structural(
    tokens: list[int], fmt: ThreadFormat, prompt_len: int, forked: list[Block]
) -> list[bool]:
    ins = [False] * (len(tokens) - prompt_len)
    for b in forked:
        o1 = b.outlines_span[1]  # type: ignore[index]
        marks = list(range(o1, b.threads[0].start))  # newline before the first thread
        for t in b.threads:
            marks += range(t.start, t.start + header_len(tokens, t, fmt))
        join_end = b.end - 1 if b.closed else b.end
        marks += range(b.threads[-1].end, join_end)  # join newline
        for k in marks:
            ins[k - prompt_len] = True
    return ins


def forked_blocks(
    tokens: list[int], fmt: ThreadFormat, prompt_len: int, inserted: list[bool] | None = None
) -> list[Block]:
    """The blocks the orchestrator forked (see `structural_inserted`)."""
    blocks = [b for b in parse(tokens, fmt, prompt_len=prompt_len).blocks
              if b.outlines_closed and b.threads]  # fmt: skip
    if inserted is None:
        return blocks
    return [b for b in blocks if inserted[b.threads[0].start - prompt_len]]


def extract_units(
    token_ids: list[int],
    fmt: ThreadFormat,
    *,
    prompt_len: int,
    inserted: list[bool] | None = None,
    header_loss: bool = True,
) -> list[Unit]:
    """All units of one trajectory (see the module docstring).

    Args:
        token_ids: prompt + merged response.
        fmt: the format (tag ids, codec).
        prompt_len: number of prompt tokens (>= 1).
        inserted: per *response* token, True if the orchestrator inserted it.
        header_loss: train the header and join tokens on the full-trajectory unit, where the
            model writes them itself in AR mode (False: no loss on them anywhere, plait < 0.2).
    """
    tokens = list(token_ids)
    if not 1 <= prompt_len <= len(tokens):
        raise ValueError(f"prompt_len must be in [1, {len(tokens)}], got {prompt_len}")
    if inserted is not None and len(inserted) != len(tokens) - prompt_len:
        raise ValueError(
            f"inserted has {len(inserted)} flags for {len(tokens) - prompt_len} response tokens"
        )
    forked = forked_blocks(tokens, fmt, prompt_len, inserted)
    structural = _structural(tokens, fmt, prompt_len, forked)
    inserted = structural if inserted is None else list(inserted)
    gen = [not x for x in inserted]
    full_gen = [g or (header_loss and st) for g, st in zip(gen, structural)]

    def unit(a: int, b: int, kind: str, flags: list[bool], **kw: object) -> Unit:
        return Unit(
            context=tokens[:a], completion=tokens[a:b], generated=flags[a - prompt_len : b - prompt_len],
            kind=kind, span=(a, b), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    units = [unit(prompt_len, len(tokens), "full", full_gen)] if len(tokens) > prompt_len else []
    a = prompt_len
    for bi, b in enumerate(forked):
        o1 = b.outlines_span[1]  # type: ignore[index]
        units.append(unit(a, o1, "seq", gen))
        lead = tokens[o1 : b.threads[0].start]
        for t in b.threads:
            h = t.start + header_len(tokens, t, fmt)
            units.append(Unit(
                context=tokens[:o1] + lead + tokens[t.start : h],  # never sees its siblings
                completion=tokens[h : t.end], generated=gen[h - prompt_len : t.end - prompt_len],
                kind="thread", block=bi, thread=t.number, span=(h, t.end),
            ))  # fmt: skip
        a = b.threads[-1].end
        while a < len(tokens) and inserted[a - prompt_len]:
            a += 1  # skip the join newline and any forced closers
    if a < len(tokens):
        units.append(unit(a, len(tokens), "seq", gen))
    return [u for u in units if u.completion]
