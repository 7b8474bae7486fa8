"""plait.hogwild: Hogwild! Inference (W workers, one shared KV cache) on plait's runtime.

Public names: `HogwildConfig`, `HogwildEngine` (`solve`, `solve_batch`, `stream`), `Layout`,
`LayoutState`, `LAYOUTS`, `PromptFormat`, the events and `ProblemResult`. See docs/hogwild.md.
"""

from __future__ import annotations

from plait.hogwild.config import HogwildConfig
from plait.hogwild.engine import HogwildEngine
from plait.hogwild.events import (
    DoneEvent,
    ProblemResult,
    Snapshot,
    SnapshotEvent,
    StepEvent,
    TokenEvent,
)
from plait.hogwild.layouts import LAYOUTS, Layout, LayoutState
from plait.hogwild.prompts import PromptFormat

__all__ = [
    "LAYOUTS",
    "DoneEvent",
    "HogwildConfig",
    "HogwildEngine",
    "Layout",
    "LayoutState",
    "ProblemResult",
    "PromptFormat",
    "Snapshot",
    "SnapshotEvent",
    "StepEvent",
    "TokenEvent",
]
