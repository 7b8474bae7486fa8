"""Accuracy vs budget for Hogwild! (W workers) and the sequential baseline, in one run.

Every method solves every problem once with snapshots at all budgets (one run gives the whole
curve). Each snapshot is scored strictly (the workers' `\\boxed{}`, else the finisher's) and
leniently ("the answer is N", the last number: `plait.eval.extraction`), with math-verify
(`plait.eval.checking`); records say which rule gave each answer, and carry the duplicate-step
counts. Records are appended (and flushed) to `records.jsonl` after each batch, so an interrupted
evaluation resumes where it stopped (`transcripts.jsonl` beside them keeps each problem's last
transcript); `manifest.json` holds the settings, and a rerun with other
settings is refused unless `overwrite` (then the old records are discarded). The table (JSON) and
the plot (PNG) are rebuilt from all records at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plait.eval import extraction
from plait.eval.checking import is_correct
from plait.eval.curves import BudgetTable, Record, append_records, read_records
from plait.eval.datasets import Problem
from plait.eval.plots import plot_budget_curves
from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import ProblemResult, Snapshot
from plait.hogwild.layouts import get_layout
from plait.hogwild.paragraph import header
from plait.hogwild.solve import solve_batch
from plait.outputs import JsonlAppender, Manifest, atomic_write_text, check_writable_dir


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


@dataclass(slots=True, kw_only=True)
class EvalSettings:
    """What the methods run with (everything but the problems and the methods themselves)."""

    budgets: tuple[int, ...]
    hogwild: Mapping[str, Any] = field(default_factory=dict)
    """`HogwildConfig` fields for the hogwild-W methods (layout, prompt, loop guard, ...)."""
    sequential: Mapping[str, Any] = field(default_factory=dict)
    """`HogwildConfig` fields for the sequential baseline (prompt, finisher, ...)."""
    sampling: Any = None
    """A `SamplingParams` for every method; None = greedy."""
    describe: Mapping[str, Any] = field(default_factory=dict)
    """Facts the caller adds to the manifest: model, dtype, dataset and its hash."""

    def config(self, m: Method) -> HogwildConfig:
        extra = self.sequential if m.sequential else self.hogwild
        return HogwildConfig(
            workers=m.workers, sequential=m.sequential, budgets=self.budgets, **extra
        )

    def manifest(self) -> dict[str, Any]:
        s = self.sampling
        return {
            **self.describe,
            "budgets": sorted(self.budgets),
            "hogwild": dict(self.hogwild),
            "sequential": dict(self.sequential),
            "sampling": None
            if s is None
            else {k: getattr(s, k, None) for k in ("temperature", "top_p", "top_k")},
        }


def evaluate(
    model: Any,
    tokenizer: Any,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    settings: EvalSettings,
    out_dir: str | Path,
    batch: int = 4,
    progress: bool = True,
    title: str = "",
    overwrite: bool = False,
    show: Callable[[BudgetTable], None] | None = None,
) -> BudgetTable:
    """Run every method on every problem; write records.jsonl, table.json and curve.png in `out_dir`.

    `show(table)` is called once table.json is written, before the plot is drawn (a plot that
    fails cannot hide the results)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1 problem, got {batch}")
    if not problems or not methods:
        raise ValueError("nothing to evaluate: give at least one problem and one method")
    configs = {m.name: settings.config(m) for m in methods}  # validated before anything is written
    for cfg in configs.values():
        get_layout(cfg.layout)
    out = check_writable_dir(out_dir, "--out")
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / "records.jsonl"
    if Manifest(out / "manifest.json", settings.manifest()).check(overwrite):
        for stale in (rec_path, out / "transcripts.jsonl"):  # emptied, never unlinked
            if stale.exists():
                JsonlAppender(stale, fresh=True).close()
    done = _complete(read_records(rec_path), settings.budgets)
    timings: dict[str, float] = {m.name: 0.0 for m in methods}
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
            results = solve_batch(model, tokenizer, [p.question for p in todo], configs[m.name],
                                  sampling=settings.sampling)  # fmt: skip
            timings[m.name] += time.perf_counter() - t0
            append_records(rec_path, _records(m, todo, results))
            _append_transcripts(out / "transcripts.jsonl", m, todo, results)
            bar.update(len(todo))
    bar.close()
    return _write_table(out, problems, methods, settings.budgets, timings, title, show)


def _complete(records: Sequence[Record], budgets: Sequence[int]) -> set[tuple[str, str]]:
    """(method, problem) pairs with a record at every budget (a torn tail can leave one partial:
    it is solved again and its new records supersede the old ones)."""
    seen: dict[tuple[str, str], set[int]] = {}
    for r in records:
        seen.setdefault((r.method, r.problem), set()).add(r.budget)
    return {k for k, b in seen.items() if b >= set(budgets)}


def _latest(records: Sequence[Record]) -> list[Record]:
    """The last record of every (method, problem, budget)."""
    return list({(r.method, r.problem, r.budget): r for r in records}.values())


def content_text(snap: Snapshot) -> str:
    """What the workers wrote by this snapshot, without step headers (for the lenient rules)."""
    parts = []
    for s in snap.steps:
        head = header(s.name, s.step)
        parts.append(s.text[len(head) :] if s.text.startswith(head) else s.text)
    return "\n\n".join(p.strip() for p in parts if p.strip())


def score(snap: Snapshot, gold: str) -> dict[str, Any]:
    """Strict and lenient answers of a snapshot, the rules that gave them, and whether each is right."""
    own = snap.answer if snap.answer_source.startswith(("worker:", "vote:")) else None
    forced = snap.answer if snap.answer_source == "finisher" else None
    strict = extraction.strict(own, forced)
    lenient = extraction.lenient(content_text(snap), own, forced)
    return {
        "answer": strict.answer,
        "rule": strict.rule,
        "correct": is_correct(strict.answer, gold),
        "answer_lenient": lenient.answer,
        "rule_lenient": lenient.rule,
        "correct_lenient": is_correct(lenient.answer, gold),
    }


def _records(
    m: Method, problems: Sequence[Problem], results: Sequence[ProblemResult]
) -> list[Record]:
    """One record per (problem, budget snapshot) of one method's batch."""
    return [
        Record(
            method=m.name,
            problem=p.id,
            budget=s.budget,
            gold=p.answer,
            source=s.answer_source,
            passes=s.passes,
            steps=s.finished_steps,
            duplicate_steps=s.duplicate_steps,
            cut_steps=s.cut_steps,
            tokens=s.tokens,
            **score(s, p.answer),
        )
        for p, res in zip(problems, results)
        for s in res.snapshots
    ]


def _append_transcripts(
    path: Path, m: Method, problems: Sequence[Problem], results: Sequence[ProblemResult]
) -> None:
    """The last snapshot's transcript of each problem (for reading what the workers did)."""
    with JsonlAppender(path) as out:
        for p, res in zip(problems, results):
            f = res.final
            out.write({"method": m.name, "problem": p.id, "gold": p.answer, "answer": f.answer,
                       "source": f.answer_source, "finisher": f.finisher_text,
                       "transcript": f.transcript()})  # fmt: skip


def _write_table(
    out: Path,
    problems: Sequence[Problem],
    methods: Sequence[Method],
    budgets: Sequence[int],
    timings: dict[str, float],
    title: str,
    show: Callable[[BudgetTable], None] | None = None,
) -> BudgetTable:
    """Rebuild table.json and curve.png from every record of these methods and problems."""
    wanted = {m.name for m in methods}
    ids = {p.id for p in problems}
    records = [
        r
        for r in _latest(read_records(out / "records.jsonl"))
        if r.method in wanted and r.problem in ids
    ]
    table = BudgetTable.from_records(records)
    summary = {
        "table": table.to_json(),
        "seconds": timings,
        "problems": len(problems),
        "budgets": sorted(budgets),
    }
    atomic_write_text(out / "table.json", json.dumps(summary, indent=2))
    if show is not None:
        show(table)
    plot_budget_curves(table, out / "curve.png", title=title)
    return table


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="problem", disable=not enabled)
