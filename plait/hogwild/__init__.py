"""plait.hogwild: Hogwild! Inference (W workers, one shared KV cache) on plait's runtime.

Public names: `HogwildConfig`, `solve`, `solve_batch`, `stream`, `HogwildProblem` (one problem
as a request of a runtime `Engine`), `Layout`,
`LayoutState`, `LAYOUTS`, `PromptFormat`, the events and `ProblemResult`. See docs/hogwild.md.
"""

from __future__ import annotations

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import (
    DoneEvent,
    ProblemResult,
    Snapshot,
    SnapshotEvent,
    StepEvent,
    TokenEvent,
)
from plait.hogwild.layouts import LAYOUTS, Layout, LayoutState
from plait.hogwild.problem import HogwildProblem
from plait.hogwild.prompts import PromptFormat
from plait.hogwild.solve import solve, solve_batch, stream

__all__ = [
    "LAYOUTS",
    "DoneEvent",
    "HogwildConfig",
    "HogwildProblem",
    "Layout",
    "LayoutState",
    "ProblemResult",
    "PromptFormat",
    "Snapshot",
    "SnapshotEvent",
    "StepEvent",
    "TokenEvent",
    "solve",
    "solve_batch",
    "stream",
]
