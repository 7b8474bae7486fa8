"""A Hogwild! problem as a request of a shared continuous-batching engine (`HogwildProblem` added
to it directly) equals `solve` on a private engine, alone and with plain requests decoding in the
same steps; cancel frees it."""

from __future__ import annotations

import pytest

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent, TokenEvent
from plait.hogwild.problem import HogwildProblem
from plait.hogwild.solve import solve
from plait.runtime.engine import Engine, EngineConfig, EngineRequest, GroupOutput, SampleOutput
from tests.helpers.engine import reference_greedy
from tests.helpers.toy import ToyTokenizer, always_end, toy_model


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return toy_model("qwen2", seed=21)


def config(**kw) -> HogwildConfig:  # noqa: ANN003
    return HogwildConfig(instructions="Be brief.", finisher_max_tokens=4, **kw)


def problem(model, **kw) -> HogwildProblem:  # noqa: ANN001, ANN003
    return HogwildProblem(model, ToyTokenizer(), config(**kw), "Add.", step_rule=always_end)


def summary(res) -> list[tuple]:  # noqa: ANN001
    return [
        (s.budget, s.passes, s.answer, s.answer_source, s.finisher_text, s.transcript())
        for s in res.snapshots
    ]


@pytest.mark.parametrize("others", [0, 2])
def test_problem_equals_solve_alone_and_batched(model, others) -> None:  # noqa: ANN001
    kw = {"workers": 2, "budgets": (5, 9)}
    want = solve(model, ToyTokenizer(), "Add.", config(**kw), step_rule=always_end)
    engine = Engine(model, config=EngineConfig(block_tokens=8, kv_budget_tokens=8192))
    prompts = [[(7 * i + 3 * k) % 60 + 4 for i in range(15 + 4 * k)] for k in range(others)]
    rids = [engine.add(EngineRequest(prompt=p, max_tokens=12, ignore_eos=True)) for p in prompts]
    gid = engine.add_group(problem(model, **kw))
    plain: dict[str, list[int]] = {r: [] for r in rids}
    done, tokens, steps = None, 0, 0
    while engine.has_work:
        steps += 1
        for out in engine.step():
            if isinstance(out, SampleOutput):
                plain[out.request_id] += out.token_ids
            else:
                assert isinstance(out, GroupOutput) and out.request_id == gid and not out.error
                tokens += sum(isinstance(e, TokenEvent) for e in out.events)
                done = next((e.result for e in out.events if isinstance(e, DoneEvent)), done)
    assert done is not None and summary(done) == summary(want)
    assert tokens > 0 and any(s.finisher_text for s in done.snapshots)  # the finisher ran
    for p, r in zip(prompts, rids):  # the plain requests decoded as they do alone
        assert plain[r] == reference_greedy(model, p, 12)
    assert engine.request_kv_tokens() == 0 and not engine.active(gid)


def test_cancelled_problem_frees_its_segments(model) -> None:  # noqa: ANN001
    engine = Engine(model, config=EngineConfig(block_tokens=8, kv_budget_tokens=8192))
    gid = engine.add_group(problem(model, workers=2, budgets=(40,)))
    for _ in range(3):
        engine.step()
    assert engine.store.reserved_slots() > 0
    assert engine.cancel(gid)
    assert engine.store.reserved_slots() == 0 and not engine.has_work
