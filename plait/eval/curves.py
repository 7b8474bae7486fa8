"""Accuracy-vs-budget curves: per-problem records in, a table (method x budget) out.

A record is one (method, problem, budget) outcome. `BudgetTable.from_records` aggregates them
into accuracy, count and a 95% Wilson interval per cell, ready for JSON and plotting. Records are
kept as JSON lines so long evaluations can write them incrementally and resume.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    method: str
    problem: str
    budget: int
    answer: str | None
    gold: str
    correct: bool
    source: str  # where the answer came from: worker:<name>, finisher, none
    passes: int


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
    correct: int
    total: int
    early_stops: int  # answers written by a worker before the budget ran out

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


class BudgetTable:
    """method -> budget -> Cell."""

    def __init__(self, cells: dict[str, dict[int, Cell]]) -> None:
        self.cells = cells

    @classmethod
    def from_records(cls, records: list[Record]) -> BudgetTable:
        cells: dict[str, dict[int, Cell]] = defaultdict(dict)
        for r in records:
            c = cells[r.method].setdefault(r.budget, Cell(0, 0, 0))
            c.correct += r.correct
            c.total += 1
            c.early_stops += r.source.startswith("worker:")
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
                    "early_stops": c.early_stops,
                }
                for b, c in sorted(row.items())
            }
        return out

    def format(self) -> str:
        """A readable table: one row per method, one column per budget (accuracy %, n)."""
        budgets = self.budgets
        lines = ["method".ljust(16) + "".join(f"{b:>12}" for b in budgets)]
        for m, row in self.cells.items():
            cells = [
                f"{100 * row[b].accuracy:6.1f}% ({row[b].total:>2})" if b in row else " " * 12
                for b in budgets
            ]
            lines.append(m.ljust(16) + "".join(f"{c:>12}" for c in cells))
        return "\n".join(lines)


def append_records(path: Path, records: list[Record]) -> None:
    with path.open("a", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")


def read_records(path: Path) -> list[Record]:
    if not path.is_file():
        return []
    return [
        Record(**json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
