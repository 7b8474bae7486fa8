"""One step's plan: where every new token sits, which segments it reads and what it sees.

A stream has new `tokens`, a `view` (ordered segments it reads) and a `write_to` segment (in its
view) that receives its tokens. Segment i of a view sits at offset = the keys the stream sees of
the segments before it; the stream's new tokens sit at offset(write_to) + len(write_to) + i. A key
is visible to a query iff its view position <= the query's. `instant=True` lets a stream see other
streams' same-step tokens (written earlier in the same layer); `instant=False` limits other
segments to their length at the start of the step (a stream always sees its own new tokens).

`plan_step` is pure: it validates the inputs and computes, in Python ints, the positions, each
stream's visible keys per segment and the reads (one per segment: every query row that reads it,
at which relative position, up to which key). It knows no backend: each backend turns a plan into
its own tables (plait.runtime.attention.registry). Arena slots are not part of the plan: the
runner reserves room first (reserving may move a segment), then asks the store for the slots.
"""

from __future__ import annotations

from dataclasses import dataclass

from plait.runtime.segments import Segment

# NOTE: index bookkeeping in Python ints; backends turn it into a few tensors at once: a decode
# step of 4 workers has ~25 (stream, segment) pairs, and small torch ops per pair cost more than
# the layer's attention (docs/log.md, session 4)


@dataclass(slots=True)
class StreamInput:
    """New tokens of one stream, the segments it reads, and the segment it writes to."""

    tokens: list[int]
    view: list[Segment]
    write_to: Segment


@dataclass(slots=True)
class SegmentRead:
    """All queries of one step that read one segment."""

    segment: Segment
    rows: list[int]  # (M,) flat query rows
    rel: list[int]  # (M,) query position relative to the segment's start in its reader's view
    visible: int  # keys 0..visible-1 may be read (the most any reader sees)
    limits: list[int] | None  # (M,) last visible key per query; None if all `visible` keys are


@dataclass(slots=True)
class StepPlan:
    """Positions, visibility and reads of one step: plain data, the same for every layer."""

    tokens: list[int]  # (T,) the new tokens of all streams, flat
    starts: list[int]  # first flat row of each stream
    lengths: list[int]  # new tokens per stream
    write_to: list[Segment]  # each stream's written segment
    write_starts: list[int]  # first slot written in each write_to (its length at the start)
    positions: list[int]  # (T,) query positions in their stream's view
    key_positions: list[int]  # (T,) new keys' positions in their written segment
    views: list[list[tuple[Segment, int]]]  # per stream, in view order: (segment, keys visible)
    reads: list[SegmentRead]  # one per segment read, in order of first reader

    @property
    def rows(self) -> int:
        """T, the number of new tokens (query rows) of the step."""
        return len(self.tokens)

    @property
    def single_read(self) -> bool:
        """Every row reads exactly one segment (no merge of partials needed)."""
        return all(len(view) == 1 for view in self.views)

    def writes(self) -> list[tuple[Segment, int, int]]:
        """(segment, first slot, tokens) of every stream's write, for `KVStore.arena_slots`."""
        return list(zip(self.write_to, self.write_starts, self.lengths))


def plan_step(
    inputs: list[StreamInput], instant: bool = True, max_position: int | None = None
) -> StepPlan:
    """Validate one step's inputs and plan it (see the module docstring).

    Args:
        inputs: the streams of the step.
        instant: whether streams see each other's same-step tokens.
        max_position: the model's context; a stream reaching beyond it is an error (None: no
            limit).
    Raises:
        ValueError: empty step or stream, write_to outside the view, a segment twice in a view,
            two streams writing one segment, a freed segment, or a position beyond the context.
    """
    _validate(inputs)
    new_len = {id(inp.write_to): len(inp.tokens) for inp in inputs}
    plan = StepPlan([], [], [], [], [], [], [], [], [])
    per_seg: dict[int, list[tuple[int, int, int, int]]] = {}  # (row, n, first rel, visible)
    segs: dict[int, Segment] = {}
    for s, inp in enumerate(inputs):
        n, row, write_to = len(inp.tokens), plan.rows, inp.write_to
        view: list[tuple[Segment, int]] = []
        offsets: list[int] = []
        off = base = 0
        for seg in inp.view:
            grows = instant or seg is write_to
            visible = seg.length + (new_len.get(id(seg), 0) if grows else 0)
            if seg is write_to:
                base = off + seg.length
            view.append((seg, visible))
            offsets.append(off)
            off += visible
        if max_position is not None and base + n > max_position:
            raise ValueError(
                f"stream {s} would reach position {base + n}, beyond the model's context of "
                f"{max_position} tokens; shorten the prompt or lower the budget"
            )
        plan.tokens.extend(inp.tokens)
        plan.starts.append(row)
        plan.lengths.append(n)
        plan.write_to.append(write_to)
        plan.write_starts.append(write_to.length)
        plan.positions.extend(range(base, base + n))
        plan.key_positions.extend(range(write_to.length, write_to.length + n))
        plan.views.append(view)
        for (seg, visible), o in zip(view, offsets):
            per_seg.setdefault(id(seg), []).append((row, n, base - o, visible))
            segs[id(seg)] = seg
    plan.reads = [_read(segs[key], entries) for key, entries in per_seg.items()]
    return plan


def _validate(inputs: list[StreamInput]) -> None:
    if not inputs:
        raise ValueError("step needs at least one stream input")
    writers: dict[int, int] = {}
    for s, inp in enumerate(inputs):
        if not inp.tokens:
            raise ValueError(f"stream {s} has no new tokens; drop it from this step")
        if not any(seg is inp.write_to for seg in inp.view):
            raise ValueError(f"stream {s}: write_to {inp.write_to.name!r} must be part of its view")
        if len({id(seg) for seg in inp.view}) != len(inp.view):
            raise ValueError(f"stream {s}: a segment appears twice in its view")
        for seg in inp.view:
            seg.check_live()
        if id(inp.write_to) in writers:
            raise ValueError(
                f"streams {writers[id(inp.write_to)]} and {s} both write to "
                f"{inp.write_to.name!r}; give each stream its own segment"
            )
        writers[id(inp.write_to)] = s


def _read(seg: Segment, entries: list[tuple[int, int, int, int]]) -> SegmentRead:
    """The reads of one segment; entries are (first row, rows, position of the first query
    relative to the segment's start, keys visible to that stream)."""
    rows: list[int] = []
    rel: list[int] = []
    limits: list[int] = []
    visible = max(e[3] for e in entries)
    for row, n, first, vis in entries:
        rows.extend(range(row, row + n))
        rel.extend(range(first, first + n))
        limits.extend(min(p, vis - 1) for p in range(first, first + n))
    full = min(limits) >= visible - 1
    return SegmentRead(seg, rows, rel, visible, None if full else limits)
