"""Solve Hogwild! problems: thin functions that add `HogwildProblem`s to a runtime `Engine`.

    result = solve(model, tokenizer, "A farmer has ...", HogwildConfig(workers=2, budgets=(256, 512)))
    results = solve_batch(model, tokenizer, ["p1", "p2"], config)   # one batch, input order
    for event in stream(model, tokenizer, ["p1", "p2"], config): ...  # TokenEvent, ..., DoneEvent

Every problem is a `HogwildProblem` (plait/hogwild/problem.py) of one continuous-batching engine,
so each engine step runs every live problem's workers (or its finisher's readers) in one
`Runner.step`. By default the engine is a private one sized for the problems (`engine_for`);
pass `engine=` to run on another (tests spy on its runner; the server adds problems to its own
engine the same way, plait/serve/hogwild_ext.py). Keyword options (`sampling`, `prompt_format`,
`choose`, `step_rule`, `on_pass`) go to every `HogwildProblem`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent, Event, ProblemResult
from plait.hogwild.problem import HogwildProblem
from plait.runtime.engine import Engine, EngineConfig, GroupOutput, KVPool, raise_for_error
from plait.runtime.runner import Runner


def engine_for(model: Any, problems: Sequence[HogwildProblem], attention: str = "fast") -> Engine:
    """A private engine whose KV budget and row limit admit all of `problems` at once.

    Its arena starts at the pool's default size and grows as segments need it: the admission
    figures are upper bounds, far above what a problem usually holds, so allocating the whole
    budget up front (the engine's default) would cost memory no run uses."""
    config = EngineConfig(  # twice the bounds: room for growth slack, so nothing is preempted
        kv_budget_tokens=2 * sum(p.kv_tokens for p in problems),
        max_rows=sum(p.rows for p in problems),
    )
    pool = KVPool(model.config, model.dtype, model.device, model.rope)
    return Engine(model, config=config, runner=Runner(model, pool, attention=attention))


def run_problems(engine: Engine, problems: Sequence[HogwildProblem]) -> Iterator[Event]:
    """Add `problems` to `engine` and step it until they are done; yield their events as they
    happen. A problem that fails re-raises its error; leaving early cancels the rest."""
    ids = [engine.add_group(p) for p in problems]
    by_id = dict(zip(ids, problems))
    try:
        while engine.has_work:
            for out in engine.step():
                if not isinstance(out, GroupOutput) or out.request_id not in by_id:
                    continue  # another request of a shared engine
                problem = by_id[out.request_id]
                if problem.error is not None:
                    raise problem.error
                raise_for_error(out)  # failed in the engine outside advance (plan, forward)
                yield from out.events  # type: ignore[misc]
    finally:
        for rid in ids:
            engine.cancel(rid)


def stream(
    model: Any,
    tokenizer: Any,
    problems: str | Sequence[str],
    config: HogwildConfig,
    *,
    attention: str = "fast",
    engine: Engine | None = None,
    **options: Any,
) -> Iterator[Event]:
    """Solve problems together (one forward per step for all); yield events as they happen."""
    texts = [problems] if isinstance(problems, str) else list(problems)
    if not texts:
        raise ValueError("no problems given; pass a problem string or a non-empty list")
    units = [HogwildProblem(model, tokenizer, config, p, i, **options) for i, p in enumerate(texts)]
    yield from run_problems(engine or engine_for(model, units, attention), units)


def solve_batch(
    model: Any, tokenizer: Any, problems: Sequence[str], config: HogwildConfig, **options: Any
) -> list[ProblemResult]:
    """Solve several problems in one batch; results in input order (options: see `stream`)."""
    results: dict[int, ProblemResult] = {}
    for ev in stream(model, tokenizer, list(problems), config, **options):
        if isinstance(ev, DoneEvent):
            results[ev.problem] = ev.result
    return [results[i] for i in range(len(problems))]


def solve(
    model: Any, tokenizer: Any, problem: str, config: HogwildConfig, **options: Any
) -> ProblemResult:
    """Solve one problem; the result has one snapshot per budget (options: see `stream`)."""
    return solve_batch(model, tokenizer, [problem], config, **options)[0]
