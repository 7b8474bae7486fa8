"""Events a Hogwild! run streams while it decodes, and the result it returns.

`plait.hogwild.stream(...)` yields these in order; `solve` consumes them and returns the
`ProblemResult`. Every event names its problem (index in the batch); worker events name the worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """A worker's token was fed into the shared cache (text is its decoded piece)."""

    problem: int
    worker: int
    pass_index: int
    token_id: int
    text: str


@dataclass(frozen=True, slots=True)
class StepEvent:
    """A worker finished a step; it was moved into the common history."""

    problem: int
    worker: int
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class CutEvent:
    """The loop guard cut a worker's step (text: the content removed); it is written again."""

    problem: int
    worker: int
    step: int
    text: str


@dataclass(frozen=True, slots=True)
class StepText:
    """One step of the transcript, in the order it sits in the KV history."""

    worker: int
    name: str
    step: int
    text: str
    finished: bool
    duplicate: bool = False
    """A finished step that repeats earlier steps (`plait.hogwild.loopguard`)."""


@dataclass(slots=True, kw_only=True)
class Snapshot:
    """The state of one problem at a budget (forward passes), with its answer."""

    budget: int
    passes: int
    """Passes actually run (< budget when the run stopped early on an answer)."""
    answer: str | None
    answer_source: str
    """'worker:<name>' (written by a worker), 'finisher', or 'none'."""
    finisher_text: str = ""
    steps: list[StepText] = field(default_factory=list)
    finished_steps: int = 0
    """Steps finished (kept) so far, all workers."""
    duplicate_steps: int = 0
    """Finished steps that repeat earlier steps (overlap at or above the loop threshold)."""
    cut_steps: int = 0
    """Steps the loop guard cut and had written again."""
    tokens: int = 0
    """Tokens fed so far, all workers (headers included; finisher tokens not)."""

    @property
    def duplicate_rate(self) -> float:
        return self.duplicate_steps / self.finished_steps if self.finished_steps else 0.0

    def transcript(self) -> str:
        return "".join(s.text for s in self.steps if s.finished) + "".join(
            s.text + "<...>\n\n" for s in self.steps if not s.finished
        )


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    problem: int
    snapshot: Snapshot


@dataclass(slots=True, kw_only=True)
class ProblemResult:
    """Everything one problem produced: prompt, snapshots per budget, final answer."""

    problem: str
    prompt: str
    workers: tuple[str, ...]
    layout: str
    snapshots: list[Snapshot]

    @property
    def final(self) -> Snapshot:
        return self.snapshots[-1]

    @property
    def answer(self) -> str | None:
        return self.final.answer

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DoneEvent:
    problem: int
    result: ProblemResult


Event = TokenEvent | StepEvent | CutEvent | SnapshotEvent | DoneEvent
