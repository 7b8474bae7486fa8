"""Layouts: functions that return each worker's view (an ordered list of segments).

A layout names the shared text segments it needs (headers, markers, separators; prefilled once,
each seeing the prompt and the shared segments before it) and maps a `LayoutState` (the history
chain, each worker's current segment, the shared segments) to one view per worker. Layouts are
pure: they work on any segment objects, so tests can use strings.

Built in (from worker i's point of view; `others` = the other workers in ascending order):
- `contiguous`: [history, ws_j, sep ... for j in others, ws_i]; workspaces grow forever, no merges.
- `interleaved`: [history, cur_i]; finished steps are merged into the history (step-wise sync).
- `combined` (the paper's main layout): [history, "### Work in progress (others)",
  cur_j, "<...>" ... for j in others, "### Work in progress (own)", cur_i]; steps are merged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S")

OTHERS_HEADER = "### Work in progress (others)\n\n"
MARKER = "<...>\n\n"
OWN_HEADER = "### Work in progress (own)\n\n"
SEPARATOR = "\n\n(the other workers write above; your workspace continues below)\n\n"


@dataclass(frozen=True, slots=True)
class LayoutState(Generic[S]):
    """What a layout reads: the history chain, per-worker current segments, shared segments."""

    history: Sequence[S]
    """Segments that form the common history, in order (normally one; more while a step moves)."""
    current: Sequence[S]
    """Worker w's current segment (its unfinished step, or its whole workspace)."""
    shared: Mapping[str, S]
    """Shared text segments by key (see `Layout.shared`)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """A named view builder. `views(state)` returns one list of segments per worker."""

    name: str
    shared: Callable[[int], list[tuple[str, str]]]
    """W -> [(key, text)] shared segments, in prefill order."""
    views: Callable[[LayoutState], list[list]]
    merges_steps: bool
    """True: a finished step moves into the history; False: workers append to one workspace."""

    def reader_view(self, state: LayoutState) -> list:
        """The view the finisher reads: the last worker's view (as in the paper)."""
        return self.views(state)[-1]


def _others(w: int, i: int) -> list[int]:
    return [j for j in range(w) if j != i]


def _combined_shared(w: int) -> list[tuple[str, str]]:
    if w == 1:
        return []
    markers = [(f"marker{k}", MARKER) for k in range(w - 1)]
    return [("others", OTHERS_HEADER), *markers, ("own", OWN_HEADER)]


def _combined_views(state: LayoutState) -> list[list]:
    w = len(state.current)
    if w == 1:
        return [[*state.history, state.current[0]]]
    views = []
    for i in range(w):
        view = [*state.history, state.shared["others"]]
        for k, j in enumerate(_others(w, i)):
            view += [state.current[j], state.shared[f"marker{k}"]]
        views.append([*view, state.shared["own"], state.current[i]])
    return views


def _interleaved_views(state: LayoutState) -> list[list]:
    return [[*state.history, cur] for cur in state.current]


def _contiguous_shared(w: int) -> list[tuple[str, str]]:
    return [(f"sep{k}", SEPARATOR) for k in range(w - 1)]


def _contiguous_views(state: LayoutState) -> list[list]:
    w = len(state.current)
    views = []
    for i in range(w):
        view = [*state.history]
        for k, j in enumerate(_others(w, i)):
            view += [state.current[j], state.shared[f"sep{k}"]]
        views.append([*view, state.current[i]])
    return views


COMBINED = Layout(
    name="combined", shared=_combined_shared, views=_combined_views, merges_steps=True
)
INTERLEAVED = Layout(
    name="interleaved", shared=lambda w: [], views=_interleaved_views, merges_steps=True
)
CONTIGUOUS = Layout(
    name="contiguous", shared=_contiguous_shared, views=_contiguous_views, merges_steps=False
)

LAYOUTS: dict[str, Layout] = {lay.name: lay for lay in (COMBINED, INTERLEAVED, CONTIGUOUS)}


def get_layout(layout: str | Layout) -> Layout:
    """Resolve a layout name or pass a user-defined `Layout` through."""
    if isinstance(layout, Layout):
        return layout
    if layout not in LAYOUTS:
        raise ValueError(
            f"unknown layout {layout!r}: use one of {sorted(LAYOUTS)} or pass a Layout object"
        )
    return LAYOUTS[layout]


def check_views(views: list[list], state: LayoutState) -> None:
    """Validate a layout's output: one view per worker, each ending in that worker's segment.

    Raises:
        ValueError: naming the broken rule (user-defined layouts are checked on every step).
    """
    w = len(state.current)
    if len(views) != w:
        raise ValueError(
            f"layout returned {len(views)} views for {w} workers; return one view per worker"
        )
    for i, view in enumerate(views):
        if not view or view[-1] is not state.current[i]:
            raise ValueError(
                f"view {i} must end with worker {i}'s own segment (it receives the new tokens)"
            )
        if len({id(s) for s in view}) != len(view):
            raise ValueError(
                f"view {i} lists a segment twice; use a separate shared segment per position"
            )
