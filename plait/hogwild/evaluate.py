"""Accuracy vs budget for Hogwild! (W workers) and the sequential baseline, in one run.

Every method solves every problem once with snapshots at all budgets (one run gives the whole
curve); answers are checked with math-verify (`plait.eval.checking`). Records are appended to
`records.jsonl` after each batch, so an interrupted evaluation resumes where it stopped; the table
(JSON) and the plot (PNG) are rebuilt from all records at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plait.eval.checking import is_correct
from plait.eval.curves import BudgetTable, Record, append_records, read_records
from plait.eval.datasets import Problem
from plait.eval.plots import plot_budget_curves
from plait.hogwild.config import HogwildConfig
from plait.hogwild.engine import HogwildEngine


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    workers: int
    sequential: bool

    @staticmethod
    def parse(spec: str) -> Method:
        """'sequential' or 'hogwild-W' (e.g. hogwild-2)."""
        if spec == "sequential":
            return Method("sequential", 1, True)
        if spec.startswith("hogwild-") and spec[8:].isdigit() and int(spec[8:]) >= 1:
            return Method(spec, int(spec[8:]), False)
        raise ValueError(
            f"unknown method {spec!r}: use 'sequential' or 'hogwild-W' such as 'hogwild-2'"
        )


def evaluate(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    budgets: Sequence[int],
    out_dir: str | Path,
    batch: int = 4,
    progress: bool = True,
    layout: str = "combined",
    finisher_max_tokens: int = 16,
    title: str = "",
    **config: Any,
) -> BudgetTable:
    """Run every method on every problem; write records.jsonl, table.json and curve.png in `out_dir`."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1 problem, got {batch}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / "records.jsonl"
    done = {(r.method, r.problem) for r in read_records(rec_path)}
    timings: dict[str, float] = {m.name: 0.0 for m in methods}
    engines = {
        m.name: HogwildEngine(
            model,
            tokenizer,
            HogwildConfig(
                workers=m.workers,
                sequential=m.sequential,
                budgets=tuple(budgets),
                layout=layout,
                finisher_max_tokens=finisher_max_tokens,
                **config,
            ),
        )
        for m in methods
    }
    bar = _bar(len(problems) * len(methods), "problems x methods", progress)
    # NOTE: batches outer, methods inner: an interrupted run has every method on the same problems.
    for i in range(0, len(problems), batch):
        chunk = problems[i : i + batch]
        for m in methods:
            todo = [p for p in chunk if (m.name, p.id) not in done]
            bar.update(len(chunk) - len(todo))
            if not todo:
                continue
            t0 = time.perf_counter()
            results = engines[m.name].solve_batch([p.question for p in todo])
            timings[m.name] += time.perf_counter() - t0
            append_records(rec_path, _records(m, todo, results))
            bar.update(len(todo))
    bar.close()
    return _write_table(out, problems, methods, budgets, timings, title)


def _records(m: Method, problems: Sequence[Problem], results: Sequence[Any]) -> list[Record]:
    """One record per (problem, budget snapshot) of one method's batch."""
    return [
        Record(
            method=m.name,
            problem=p.id,
            budget=s.budget,
            answer=s.answer,
            gold=p.answer,
            correct=is_correct(s.answer, p.answer),
            source=s.answer_source,
            passes=s.passes,
        )
        for p, res in zip(problems, results)
        for s in res.snapshots
    ]


def _write_table(
    out: Path,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    budgets: Sequence[int],
    timings: dict[str, float],
    title: str,
) -> BudgetTable:
    """Rebuild table.json and curve.png from every record of these methods and problems."""
    wanted = {m.name for m in methods}
    ids = {p.id for p in problems}
    records = [
        r for r in read_records(out / "records.jsonl") if r.method in wanted and r.problem in ids
    ]
    table = BudgetTable.from_records(records)
    summary = {
        "table": table.to_json(),
        "seconds": timings,
        "problems": len(problems),
        "budgets": list(budgets),
    }
    (out / "table.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    plot_budget_curves(table, out / "curve.png", title=title)
    return table


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="problem", disable=not enabled)
