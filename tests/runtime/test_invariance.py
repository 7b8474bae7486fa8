"""Batch invariance: a request's greedy tokens, seeded samples and log-probs are the same bits
alone on a fresh engine, with a warm prefix cache, and inside a random workload (random arrival
steps, prompts up to 2k tokens, shared prefixes, n > 1, chunked prefill, cancels); a negative
control (batch invariance off: torch's GEMM and the per-read attention merge for long steps)
must make the same comparison fail. bf16 on CPUs where plait's kernels run (the contract holds
there; elsewhere these tests are skipped with the reason)."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.engine import Engine, EngineConfig, EngineRequest, SampleOutput
from plait.runtime.engine.scoring import sampler_logprobs
from plait.runtime.sampling import SamplingParams
from tests.helpers.tiny import tiny_model

WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 16)
pytestmark = pytest.mark.skipif(
    bool(WHY_NOT), reason=f"batch invariance needs plait's kernels: {WHY_NOT}"
)

CONFIG = EngineConfig(block_tokens=32, step_tokens=160, kv_budget_tokens=60000, max_rows=64)
Key = tuple[int, int]  # (request index, sample index)
Trace = list[tuple[int, float]]  # (token, log-prob) per generated token


@dataclass(slots=True)
class Arrival:
    step: int
    request: EngineRequest
    cancel_at: int | None  # engine step at which it is cancelled (None: runs to the end)


def _workload(seed: int, count: int = 12) -> list[Arrival]:
    rng = random.Random(seed)
    bases = [[rng.randrange(3, 128) for _ in range(rng.randint(200, 1900))] for _ in range(2)]
    out = []
    for i in range(count):
        if rng.random() < 0.7:  # a prefix of a shared base (often mid-block) and its own end
            base = rng.choice(bases)
            prompt = base[: rng.randint(1, len(base))] + [
                rng.randrange(3, 128) for _ in range(rng.randint(1, 40))
            ]
        else:
            prompt = [rng.randrange(3, 128) for _ in range(rng.randint(1, 2000))]
        sampling = (
            SamplingParams()
            if rng.random() < 0.5
            else SamplingParams(
                temperature=0.8, top_k=rng.choice([0, 20]), seed=rng.randrange(1000)
            )
        )
        req = EngineRequest(
            prompt=prompt,
            max_tokens=rng.randint(4, 20),
            n=rng.choice([1, 1, 2, 3]),
            sampling=sampling,
            logprobs=0,
        )
        step = rng.randint(0, 25)
        cancel = step + rng.randint(1, 15) if i % 6 == 5 else None
        out.append(Arrival(step, req, cancel))
    return out


def _fresh(req: EngineRequest) -> EngineRequest:
    return replace(req, request_id="")


def _drive(engine: Engine, arrivals: list[Arrival]) -> dict[Key, Trace]:
    """Run the workload: requests join at their steps, cancels happen at theirs."""
    traces: dict[Key, Trace] = {}
    ids: dict[str, int] = {}
    step = 0
    pending = sorted(range(len(arrivals)), key=lambda i: arrivals[i].step)
    while pending or engine.has_work:
        while pending and arrivals[pending[0]].step <= step:
            i = pending.pop(0)
            ids[engine.add(_fresh(arrivals[i].request))] = i
        for rid, i in list(ids.items()):
            if arrivals[i].cancel_at == step:
                engine.cancel(rid)
        for o in engine.step() if engine.has_work else []:
            if isinstance(o, SampleOutput):
                t = traces.setdefault((ids[o.request_id], o.index), [])
                t.extend((tok, lp.logprob) for tok, lp in zip(o.token_ids, o.logprobs))
        step += 1
    return traces


def _alone(model, req: EngineRequest) -> tuple[list[Trace], list[Trace]]:
    """The request alone on a fresh engine, then again on the same (now warm) engine."""
    engine = Engine(model, config=CONFIG)
    runs = []
    for _ in range(2):
        t = _drive(engine, [Arrival(0, req, None)])
        runs.append([t.get((0, j), []) for j in range(req.n)])
    return runs[0], runs[1]


def _mismatches(model, arrivals: list[Arrival], traces: dict[Key, Trace]) -> list[str]:
    bad = []
    for i, a in enumerate(arrivals):
        fresh, warm = _alone(model, a.request)
        for j in range(a.request.n):
            got = traces.get((i, j), [])
            if warm[j] != fresh[j]:
                bad.append(f"request {i} sample {j}: warm prefix cache != fresh engine")
            # a cancelled request stops early: what it produced is a prefix of the run alone
            want = fresh[j][: len(got)] if a.cancel_at is not None else fresh[j]
            if got != want:
                bad.append(f"request {i} sample {j}: in the workload != alone")
    return bad


@pytest.fixture(scope="module")
def model():
    # one thread: the bits do not depend on it (each output is summed by one thread), and a
    # loaded 2-core box makes two-thread kernels wait on each other (8 s instead of 1.3 s)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_model("qwen3", seed=4).to(torch.bfloat16)
    torch.set_num_threads(threads)


def test_random_workload_equals_alone_and_warm_cache(model):
    arrivals = _workload(seed=21)
    engine = Engine(model, config=CONFIG)
    with torch.no_grad():
        traces = _drive(engine, arrivals)
        bad = _mismatches(model, arrivals, traces)
    assert engine.cache.hit_rate() > 0  # the workload did share prefixes
    assert any(a.cancel_at is not None for a in arrivals)
    assert not bad, bad


def test_negative_control_other_reduction_order_fails(model):
    """Batch invariance off (prefill rows through torch's GEMM, long steps through the per-read
    partials and their merge): the same comparison must find differences."""
    arrivals = _workload(seed=22, count=6)
    kernels.set_batch_invariant(False)
    try:
        with torch.no_grad():
            traces = _drive(Engine(model, config=CONFIG), arrivals)
            bad = _mismatches(model, arrivals, traces)
    finally:
        kernels.set_batch_invariant(True)
    assert bad, "the invariance test cannot tell another reduction order apart"


def test_sampler_logprobs_equal_the_engine_bitwise(model):
    """Trainer = sampler: one packed forward over the engine's layout reproduces the log-prob
    bits the engine reported for its own trajectories (greedy and seeded, n > 1, in a batch)."""
    rng = random.Random(5)
    reqs = [
        EngineRequest(
            prompt=[rng.randrange(3, 128) for _ in range(length)],
            max_tokens=16,
            n=2,
            logprobs=0,
            sampling=SamplingParams(temperature=temp, seed=7),
        )
        for length, temp in ((1, 0.0), (40, 0.9), (333, 0.0), (700, 1.0))
    ]
    with torch.no_grad():
        traces = _drive(
            Engine(model, config=CONFIG), [Arrival(i, r, None) for i, r in enumerate(reqs)]
        )
    for (i, j), trace in traces.items():
        tokens = [t for t, _ in trace]
        got = sampler_logprobs(model, reqs[i].prompt, tokens, block_tokens=CONFIG.block_tokens)
        assert got.tolist() == [lp for _, lp in trace], f"request {i} sample {j}"
