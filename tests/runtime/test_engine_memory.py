"""KV on demand: requests without max_tokens all run at once; under a KV budget a quarter of the
workload's peak need, preempted requests and groups still produce exactly what they produce
alone (greedy = the bare runner loop, seeded samples = the same request alone), KV returns to
idle. fp32 toy models (bitwise recompute in bf16 rests on batch-invariant numerics)."""

from __future__ import annotations

import random

import pytest

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent
from plait.hogwild.problem import HogwildProblem
from plait.hogwild.solve import solve
from plait.runtime.engine import Engine, EngineConfig, EngineRequest, GroupOutput, SampleOutput
from plait.runtime.sampling import SamplingParams
from tests.helpers.engine import reference_greedy
from tests.helpers.tiny import tiny_model
from tests.helpers.toy import ToyTokenizer, always_end, toy_model


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return toy_model("qwen2", seed=21)


CFG = HogwildConfig(instructions="Be brief.", finisher_max_tokens=4, workers=2, budgets=(5, 9))


def _hogwild(model, cls: type[HogwildProblem] = HogwildProblem) -> HogwildProblem:  # noqa: ANN001
    return cls(model, ToyTokenizer(), CFG, "Add.", step_rule=always_end)


def _summary(done) -> list[tuple]:  # noqa: ANN001
    return [(s.budget, s.passes, s.answer, s.finisher_text, s.transcript()) for s in done.snapshots]


@pytest.mark.parametrize("count", [8, 32])
def test_requests_without_max_tokens_all_run_at_once(count: int) -> None:
    m = tiny_model("llama", seed=2, max_position=8192)  # SmolLM2's context
    e = Engine(m, config=EngineConfig())  # the default budget: 32768 slots
    ctx = m.config.max_position
    prompts = [[(7 * i + k) % 100 + 3 for i in range(30 + k)] for k in range(count)]
    ids = [e.add(EngineRequest(prompt=p, max_tokens=ctx - len(p))) for p in prompts]
    peak = 0
    for _ in range(3):
        e.step()
        peak = max(peak, e.num_running())
    assert peak == count and e.num_waiting() == 0  # reserving the worst case ran 4 at once
    assert e.request_kv_tokens() <= sum(len(p) + 64 for p in prompts)  # a unit each, no more
    for rid in ids:
        e.cancel(rid)
    assert e.request_kv_tokens() == 0 and not e.has_work


def _workload(rng: random.Random) -> list[EngineRequest]:
    base = [rng.randrange(3, 120) for _ in range(40)]
    reqs = []
    for k in range(16):
        shared = base[: rng.choice([0, 9, 17, 33])]  # shared prefixes, split mid-block too
        prompt = shared + [rng.randrange(3, 120) for _ in range(rng.randint(3, 30))]
        seeded = k % 3 == 1
        sampling = SamplingParams(temperature=0.9, top_k=20, seed=k) if seeded else None
        reqs.append(
            EngineRequest(
                prompt=prompt, max_tokens=rng.randint(16, 64), n=1 + k % 3, ignore_eos=True,
                sampling=sampling or SamplingParams(), request_id=f"r{k}",
            )
        )  # fmt: skip
    return reqs


def _alone(model, req: EngineRequest) -> list[list[int]]:  # noqa: ANN001
    e = Engine(model, config=EngineConfig(block_tokens=8, kv_budget_tokens=8192))
    return e.generate([req])[0]


def test_preemption_under_a_quarter_of_the_peak_need(model) -> None:  # noqa: ANN001
    rng = random.Random(7)
    reqs = _workload(rng)
    group = _hogwild(model)
    peak = sum(len(r.prompt) + r.n * r.max_tokens for r in reqs) + group.kv_tokens
    budget = max(peak // 4, group.kv_tokens)
    cfg = EngineConfig(block_tokens=8, step_tokens=64, kv_budget_tokens=budget)
    e = Engine(model, config=cfg)
    got: dict[str, list[list[int]]] = {r.request_id: [[] for _ in range(r.n)] for r in reqs}
    arrivals = sorted(rng.randrange(0, 30) for _ in reqs)
    cancels = {"r4": 9, "r10": 40}  # request -> step
    done, step, pending = None, 0, list(reqs)
    while pending or e.has_work:
        while pending and arrivals[len(reqs) - len(pending)] <= step:
            e.add(pending.pop(0))
        if step == 12:
            gid = e.add_group(group)
        for rid, at in cancels.items():
            if at == step:
                e.cancel(rid)
        for out in e.step():
            if isinstance(out, SampleOutput):
                got[out.request_id][out.index] += out.token_ids
            else:
                assert isinstance(out, GroupOutput) and out.request_id == gid and not out.error
                done = next((ev.result for ev in out.events if isinstance(ev, DoneEvent)), done)
        step += 1
    assert e.stats.preemptions > 0 and e.stats.recomputed_tokens > 0
    assert e.request_kv_tokens() == 0 and e.store.reserved_slots() == e.cache.total_tokens()
    for r in reqs:
        if r.request_id in cancels:
            continue
        if r.sampling.greedy:  # the engine twin: a bare runner loop
            want = [reference_greedy(model, r.prompt, r.max_tokens)] * r.n
        else:  # the same seeded request alone
            want = _alone(model, r)
        assert got[r.request_id] == want, f"{r.request_id} changed under preemption"
    alone = solve(model, ToyTokenizer(), "Add.", CFG, step_rule=always_end)
    assert done is not None and _summary(done) == _summary(alone)


class _Counting(HogwildProblem):
    starts = 0

    def start(self, store, runner) -> None:  # noqa: ANN001
        self.starts += 1
        super().start(store, runner)


def test_a_group_is_preempted_whole_and_replays_nothing_twice(model) -> None:  # noqa: ANN001
    g = _hogwild(model, _Counting)
    e = Engine(model, config=EngineConfig(block_tokens=8, kv_budget_tokens=g.kv_tokens))
    e.add(EngineRequest(prompt=list(range(3, 40)), max_tokens=g.kv_tokens - 60, ignore_eos=True))
    gid = e.add_group(g)
    events, done = [], None
    while e.has_work:
        for out in e.step():
            if isinstance(out, GroupOutput):
                assert out.request_id == gid and not out.error
                events += out.events
                done = next((ev.result for ev in out.events if isinstance(ev, DoneEvent)), done)
    assert g.starts > 1 and e.stats.preemptions > 0  # preempted, then started again
    plain = Engine(model, config=EngineConfig(block_tokens=8, kv_budget_tokens=8192))
    plain.add_group(alone := _hogwild(model, _Counting))
    want = [ev for o in _drain(plain) for ev in o.events]
    assert alone.starts == 1 and [type(ev) for ev in events] == [type(ev) for ev in want]
    assert done is not None and _summary(done) == _summary(next(
        ev.result for ev in want if isinstance(ev, DoneEvent)))  # fmt: skip
    assert e.request_kv_tokens() == 0


def _drain(e: Engine) -> list[GroupOutput]:
    outs = []
    while e.has_work:
        outs += [o for o in e.step() if isinstance(o, GroupOutput)]
    return outs
