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

from plait.hogwild.answers import last_boxed, last_code_block

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


def run_finishers(
    step: Callable[[list[tuple[list[int], list[Any], Any]]], Any],
    store: Any,
    requests: Sequence[FinisherRequest],
    encode: Callable[[str], list[int]],
    decode: Callable[[list[int]], str],
    task: str,
    max_tokens: int,
) -> list[tuple[str | None, str]]:
    """Run all finishers greedily in one batch; return (answer or None, generated text) per request.

    Args:
        step: runs one forward over [(tokens, view, write_to)] and returns last-token logits (S, V).
    """
    prompt = encode(finisher_text(task))
    readers = [
        store.new_segment(capacity=len(prompt) + max_tokens + 1, name="reader") for _ in requests
    ]
    generated: list[list[int]] = [[] for _ in requests]
    answers: list[str | None] = [None] * len(requests)
    feeds = [list(prompt) for _ in requests]
    try:
        for _ in range(max_tokens):
            live = [i for i, a in enumerate(answers) if a is None]
            if not live:
                break
            logits = step([(feeds[i], [*requests[i].view, readers[i]], readers[i]) for i in live])
            for row, i in enumerate(live):
                tok = int(logits[row].argmax())
                generated[i].append(tok)
                feeds[i] = [tok]
                answers[i] = finisher_answer(decode(generated[i]), task)
    finally:
        for seg in readers:
            store.free(seg)
    return [(answers[i], decode(generated[i])) for i in range(len(requests))]
