"""Accuracy-vs-budget curves: per-problem records in, a table (method x budget) out.

A record is one (method, problem, budget) outcome, scored twice: strict (the model's own
`\\boxed{}`, else the finisher's) and lenient (`plait.eval.extraction`), each naming the rule that
gave the answer. `BudgetTable.from_records` aggregates them into accuracy (strict and lenient),
count, a 95% Wilson interval and the duplicate-step rate per cell, ready for JSON and plotting.
Records are kept as JSON lines (`plait.outputs.read_jsonl` / `JsonlAppender`) so long evaluations
write them incrementally and resume.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plait.outputs import JsonlAppender, read_jsonl


@dataclass(frozen=True, slots=True)
class Record:
    method: str
    problem: str
    budget: int
    answer: str | None
    gold: str
    correct: bool
    source: str  # where the answer came from: worker:<name>, vote:<k>/<n>, finisher, none
    passes: int
    rule: str = ""
    """Strict rule that gave `answer`: boxed, finisher or none (`plait.eval.extraction`)."""
    answer_lenient: str | None = None
    rule_lenient: str = ""
    """Lenient rule: boxed, answer_is, finisher, last_number or none."""
    correct_lenient: bool = False
    steps: int = 0
    """Finished steps (all workers) at this budget."""
    duplicate_steps: int = 0
    cut_steps: int = 0
    tokens: int = 0
    """Tokens the method fed (all workers) by this budget."""


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of k successes out of n."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


@dataclass(slots=True)
class Cell:
    correct: int = 0
    total: int = 0
    early_stops: int = 0  # answers written by a worker before the budget ran out
    correct_lenient: int = 0
    steps: int = 0
    duplicate_steps: int = 0
    cut_steps: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    @property
    def accuracy_lenient(self) -> float:
        return self.correct_lenient / self.total if self.total else 0.0

    @property
    def duplicate_rate(self) -> float:
        return self.duplicate_steps / self.steps if self.steps else 0.0

    def add(self, r: Record) -> None:
        self.correct += r.correct
        self.correct_lenient += r.correct_lenient
        self.total += 1
        self.early_stops += r.source.startswith(("worker:", "vote:"))
        self.steps += r.steps
        self.duplicate_steps += r.duplicate_steps
        self.cut_steps += r.cut_steps


class BudgetTable:
    """method -> budget -> Cell."""

    def __init__(self, cells: dict[str, dict[int, Cell]]) -> None:
        self.cells = cells

    @classmethod
    def from_records(cls, records: list[Record]) -> BudgetTable:
        cells: dict[str, dict[int, Cell]] = defaultdict(dict)
        for r in records:
            cells[r.method].setdefault(r.budget, Cell()).add(r)
        return cls(dict(cells))

    @property
    def methods(self) -> list[str]:
        return list(self.cells)

    @property
    def budgets(self) -> list[int]:
        return sorted({b for m in self.cells.values() for b in m})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m, row in self.cells.items():
            out[m] = {
                str(b): {
                    "accuracy": c.accuracy,
                    "correct": c.correct,
                    "total": c.total,
                    "ci95": wilson(c.correct, c.total),
                    "accuracy_lenient": c.accuracy_lenient,
                    "correct_lenient": c.correct_lenient,
                    "ci95_lenient": wilson(c.correct_lenient, c.total),
                    "early_stops": c.early_stops,
                    "steps": c.steps,
                    "duplicate_steps": c.duplicate_steps,
                    "duplicate_rate": c.duplicate_rate,
                    "cut_steps": c.cut_steps,
                }
                for b, c in sorted(row.items())
            }
        return out

    def format(self) -> str:
        """A readable table: per method and budget, strict / lenient accuracy %, n, dup. rate."""
        budgets = self.budgets
        lines = ["method".ljust(16) + "".join(f"{b:>24}" for b in budgets)]
        for m, row in self.cells.items():
            cells = [
                f"{100 * row[b].accuracy:3.0f}/{100 * row[b].accuracy_lenient:3.0f}% "
                f"({row[b].total:>2}) dup {100 * row[b].duplicate_rate:3.0f}%"
                if b in row
                else ""
                for b in budgets
            ]
            lines.append(m.ljust(16) + "".join(f"{c:>24}" for c in cells))
        lines.append("(accuracy strict/lenient %, problems, duplicate-step rate)")
        return "\n".join(lines)


def append_records(path: Path, records: list[Record]) -> None:
    with JsonlAppender(path) as out:
        for r in records:
            out.write(asdict(r))


def read_records(path: Path) -> list[Record]:
    """Records of a JSONL file (a torn last line is skipped with a warning)."""
    out = []
    for n, row in enumerate(read_jsonl(path), 1):
        try:
            out.append(Record(**row))
        except TypeError as exc:
            raise ValueError(f"{path}: record {n} is not an evaluation record ({exc})") from None
    return out
