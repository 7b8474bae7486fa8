"""The KV segments of one problem and how a pass's feeds become stream inputs.

Segments: `common` (prompt, then finished steps in the order they finished), the layout's shared
text segments, and two step segments per worker (the current one and a spare that receives the
next step's header while the finished step moves). A `Feed` says what a worker writes this pass:
`cur` tokens into its current step, and, when the step ends after them (`switch`), `nxt` tokens
(the next step's header) into the spare segment.

Step switch with instant visibility (merging layouts): the worker runs two streams in the same
pass: `cur` with its normal view, and `nxt` with the view the layout gives AFTER the move (the
history chain [common, finished steps of this pass in worker order]). After the forward the
finished steps are moved into `common` in that order (one rotation each), so the stored KV is
exactly what the `nxt` stream read. Without instant visibility the header is fed one pass later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.hogwild.layouts import Layout, LayoutState, check_views


@dataclass(slots=True)
class Feed:
    """What one worker writes in one pass."""

    cur: list[int]
    switch: bool = False
    nxt: list[int] = field(default_factory=list)


@dataclass(slots=True)
class PlannedStream:
    """One stream of a pass: (tokens, view, write_to) plus who it belongs to."""

    worker: int
    tokens: list[int]
    view: list[Any]
    write_to: Any
    logits: bool
    """True: the worker samples its next token from this stream's last-token logits."""


class Workspace:
    """Segments and view plans of one problem (W workers, one layout) inside a `KVStore`."""

    def __init__(
        self,
        store: Any,
        layout: Layout,
        workers: int,
        capacity: int,
        instant: bool,
        prompt_capacity: int,
    ) -> None:
        self.store, self.layout, self.w, self.instant = store, layout, workers, instant
        self.common = store.new_segment(capacity=prompt_capacity, name="common")
        self.shared: dict[str, Any] = {}
        self.shared_texts = layout.shared(workers)
        for key, _ in self.shared_texts:
            self.shared[key] = store.new_segment(capacity=16, name=key)
        self.current = [
            store.new_segment(capacity=capacity, name=f"w{i}.a") for i in range(workers)
        ]
        self.spare = [store.new_segment(capacity=capacity, name=f"w{i}.b") for i in range(workers)]

    # ------------------------------------------------------------------ views

    def state(
        self, history: list[Any] | None = None, current: list[Any] | None = None
    ) -> LayoutState:
        return LayoutState(
            history=history or [self.common], current=current or self.current, shared=self.shared
        )

    def views(self, state: LayoutState | None = None) -> list[list[Any]]:
        state = state or self.state()
        views = self.layout.views(state)
        check_views(views, state)
        return views

    def reader_view(self) -> list[Any]:
        """The finisher's view: the last worker's view of the current state."""
        return self.views()[-1]

    def shared_prefill_views(self) -> list[tuple[Any, str, list[Any]]]:
        """(segment, text, view) to prefill shared segments: each sees the prompt and those before."""
        out: list[tuple[Any, str, list[Any]]] = []
        before = [self.common]
        for key, text in self.shared_texts:
            seg = self.shared[key]
            out.append((seg, text, [*before, seg]))
            before.append(seg)
        return out

    # ------------------------------------------------------------------ passes

    def plan(self, feeds: list[Feed | None]) -> list[PlannedStream]:
        """Turn this pass's feeds (one per worker, None = idle) into streams."""
        if len(feeds) != self.w:
            raise ValueError(f"need one feed per worker ({self.w}), got {len(feeds)}")
        views = self.views()
        merging = self.layout.merges_steps
        switching = [i for i, f in enumerate(feeds) if f is not None and f.switch and merging]
        after: list[list[Any]] | None = None
        if switching and self.instant and any(feeds[i].nxt for i in switching):  # type: ignore[union-attr]
            history = [self.common, *(self.current[i] for i in switching)]
            current = [self.spare[i] if i in switching else c for i, c in enumerate(self.current)]
            after = self.views(self.state(history, current))
        out: list[PlannedStream] = []
        for i, f in enumerate(feeds):
            if f is None:
                continue
            if f.switch and not merging:  # contiguous: the header follows in the same segment
                out.append(PlannedStream(i, [*f.cur, *f.nxt], views[i], self.current[i], True))
                continue
            two = f.switch and bool(f.nxt) and self.instant
            if f.cur:
                out.append(PlannedStream(i, list(f.cur), views[i], self.current[i], not two))
            if two:
                assert after is not None
                out.append(PlannedStream(i, list(f.nxt), after[i], self.spare[i], True))
        return out

    def commit(self, feeds: list[Feed | None]) -> list[int]:
        """After the forward: move finished steps into `common` (worker order); return those workers.

        Workers whose header was deferred (no instant visibility) get it as their next feed: the
        caller reads `deferred_header(i)`.
        """
        if not self.layout.merges_steps:
            return []
        moved = []
        for i, f in enumerate(feeds):
            if f is None or not f.switch:
                continue
            self.store.move(self.current[i], self.common)
            self.current[i], self.spare[i] = self.spare[i], self.current[i]
            moved.append(i)
        return moved

    def defers_header(self, feed: Feed) -> bool:
        """True when `feed`'s header must be fed in the next pass (switch without instant)."""
        return feed.switch and bool(feed.nxt) and self.layout.merges_steps and not self.instant

    def free(self) -> None:
        for seg in [self.common, *self.shared.values(), *self.current, *self.spare]:
            self.store.free(seg)
