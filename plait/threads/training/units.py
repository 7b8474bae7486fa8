"""Every (context, completion) unit the orchestrator issues for a trajectory, from its token ids.

`extract_units(token_ids, fmt, prompt_len=P)` returns, in order:
  1. the full-trajectory unit (prompt -> whole response; keeps the plain AR mode trained);
  2. per sequential phase: context = everything before it, completion = up to `</Outlines>`
     (or to the end);
  3. per thread i of a forked block: context = text up to `</Outlines>` + `\\n<Thread>\\n{i}:`,
     completion = the body up to and including `</Thread>`.
These contexts are exactly the orchestrator's request contexts (tested). `Unit.generated` marks
completion tokens the model wrote; orchestrator-inserted ones (thread headers, the newline
before the first thread, the join newline, forced `</Thread>`/`</Parallel>`) are False. Without
the orchestrator's mask (`inserted=None`) the structural ones are inferred; forced closers cannot
be told apart from model output then, so pass `ThreadRun.inserted` when you have it.
Assumption: every block with a closed `<Outlines>` list and at least one thread was forked.
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


def structural_inserted(tokens: list[int], fmt: ThreadFormat, prompt_len: int) -> list[bool]:
    """Per response token: True where the orchestrator would have inserted it."""
    ins = [False] * (len(tokens) - prompt_len)
    for b in _forked(parse(tokens, fmt, prompt_len=prompt_len).blocks):
        o1 = b.outlines_span[1]  # type: ignore[index]
        marks = list(range(o1, b.threads[0].start))  # newline before the first thread
        for t in b.threads:
            marks += range(t.start, t.start + header_len(tokens, t, fmt))
        join_end = b.end - 1 if b.closed else b.end
        marks += range(b.threads[-1].end, join_end)  # join newline
        for k in marks:
            ins[k - prompt_len] = True
    return ins


def _forked(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.outlines_closed and b.threads]


def extract_units(
    token_ids: list[int],
    fmt: ThreadFormat,
    *,
    prompt_len: int,
    inserted: list[bool] | None = None,
) -> list[Unit]:
    """All units of one trajectory (see the module docstring).

    Args:
        token_ids: prompt + merged response.
        fmt: the format (tag ids, codec).
        prompt_len: number of prompt tokens (>= 1).
        inserted: per *response* token, True if the orchestrator inserted it.
    """
    tokens = list(token_ids)
    if not 1 <= prompt_len <= len(tokens):
        raise ValueError(f"prompt_len must be in [1, {len(tokens)}], got {prompt_len}")
    if inserted is None:
        inserted = structural_inserted(tokens, fmt, prompt_len)
    if len(inserted) != len(tokens) - prompt_len:
        raise ValueError(
            f"inserted has {len(inserted)} flags for {len(tokens) - prompt_len} response tokens"
        )
    gen = [not x for x in inserted]

    def unit(a: int, b: int, kind: str, **kw: object) -> Unit:
        return Unit(
            context=tokens[:a], completion=tokens[a:b], generated=gen[a - prompt_len : b - prompt_len],
            kind=kind, span=(a, b), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    units = [unit(prompt_len, len(tokens), "full")] if len(tokens) > prompt_len else []
    a = prompt_len
    tree = parse(tokens, fmt, prompt_len=prompt_len)
    for bi, b in enumerate(_forked(tree.blocks)):
        o1 = b.outlines_span[1]  # type: ignore[index]
        units.append(unit(a, o1, "seq"))
        lead = tokens[o1 : b.threads[0].start]
        for t in b.threads:
            h = header_len(tokens, t, fmt)
            ctx = tokens[:o1] + lead + tokens[t.start : t.start + h]
            body = (t.start + h, t.end)
            units.append(
                Unit(
                    context=ctx,
                    completion=tokens[body[0] : body[1]],
                    generated=gen[body[0] - prompt_len : body[1] - prompt_len],
                    kind="thread",
                    block=bi,
                    thread=t.number,
                    span=body,
                )  # fmt: skip
            )
        a = b.threads[-1].end
        while a < len(tokens) and inserted[a - prompt_len]:
            a += 1  # skip the join newline and any forced closers
    if a < len(tokens):
        units.append(unit(a, len(tokens), "seq"))
    return [u for u in units if u.completion]
