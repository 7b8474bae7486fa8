"""The finisher: when a budget ends without a final answer, ask for one right away.

A reader stream reads the last worker's view (the existing segments, nothing re-encoded), then a
fresh reader segment holding "\\n\\n" + the finisher text; it decodes greedily until the answer is
complete or `max_tokens` is reached. Worker segments are never written, so a finisher at one
budget does not change what happens at the next. Finisher tokens are not counted in the budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from plait.hogwild.answering import last_boxed, last_code_block

MATH_FINISHER = (
    "\n\nTime is up, so I must answer now. Taking all of the work above into account, "
    "my final answer is \\boxed{"
)
CODE_FINISHER = (
    "\n\nTime is up, so I must answer now. Taking all of the work above into account, "
    "my final solution code is:\n\n```python\n"
)


def finisher_text(task: str = "math") -> str:
    """The text appended after the reader's view (ends in an open \\boxed{ or ```python block)."""
    if task == "math":
        return MATH_FINISHER
    if task == "code":
        return CODE_FINISHER
    raise ValueError(f"task must be 'math' or 'code', got {task!r}")


def finisher_answer(generated: str, task: str = "math") -> str | None:
    """The answer in the finisher's generated text, or None while it is incomplete."""
    if task == "math":
        return last_boxed("\\boxed{" + generated)
    return last_code_block("```python\n" + generated)


@dataclass(slots=True)
class FinisherRequest:
    view: list[Any]
    """The segments the reader reads (the last worker's view)."""


class FinisherBatch:
    """Finishers as a step-able batch: `streams()` for the next forward, `advance(logits)` after
    it, until `done` (every answer complete or `max_tokens` steps); `results()` then `free()`.
    `HogwildProblem` puts its streams into the engine's shared batch."""

    def __init__(
        self,
        store: Any,
        requests: Sequence[FinisherRequest],
        encode: Callable[[str], list[int]],
        decode: Callable[[list[int]], str],
        task: str,
        max_tokens: int,
    ) -> None:
        self.store, self.requests, self.decode, self.task = store, requests, decode, task
        self.max_tokens, self.steps = max_tokens, 0
        prompt = encode(finisher_text(task))
        self.readers = [
            store.new_segment(capacity=len(prompt) + max_tokens + 1, name="reader")
            for _ in requests
        ]
        self.generated: list[list[int]] = [[] for _ in requests]
        self.answers: list[str | None] = [None] * len(requests)
        self.feeds = [list(prompt) for _ in requests]
        self.live: list[int] = []

    @property
    def done(self) -> bool:
        return self.steps >= self.max_tokens or all(a is not None for a in self.answers)

    def streams(self) -> list[tuple[list[int], list[Any], Any]]:
        """(tokens, view, write_to) of every reader still without an answer."""
        self.live = [i for i, a in enumerate(self.answers) if a is None]
        return [
            (self.feeds[i], [*self.requests[i].view, self.readers[i]], self.readers[i])
            for i in self.live
        ]

    def advance(self, logits: Any) -> None:
        """Greedy next token of each live reader from its last-token logits row (S, V)."""
        self.steps += 1
        for row, i in enumerate(self.live):
            tok = int(logits[row].argmax())
            self.generated[i].append(tok)
            self.feeds[i] = [tok]
            self.answers[i] = finisher_answer(self.decode(self.generated[i]), self.task)

    def results(self) -> list[tuple[str | None, str]]:
        return [(a, self.decode(g)) for a, g in zip(self.answers, self.generated)]

    def free(self) -> None:
        for seg in self.readers:
            self.store.free(seg)
