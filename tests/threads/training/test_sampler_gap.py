"""Trainer = sampler on engine-produced trajectories: the exact sampler log-probs of every call
equal, bit for bit, the log-probs the engine reported while sampling it (bf16 where plait's
kernels run); the packed trainer forward's distance to them is reported, and is small."""

from __future__ import annotations

import math

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.engine import Engine, EngineConfig, EngineRequest
from plait.runtime.sampling import SamplingParams
from plait.threads.training.rl_loss import broadcast_pg_loss
from plait.threads.training.sampler_gap import sampler_call_logprobs, sampler_gap
from plait.threads.training.trie import UnitTokens
from tests.helpers.tiny import tiny_model

WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 16)
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"needs plait's kernels: {WHY_NOT}")
BLOCK = 16


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_model("qwen2", seed=6, vocab=64).to(torch.bfloat16)
    torch.set_num_threads(threads)


def _call(engine: Engine, context: list[int], seed: int) -> tuple[UnitTokens, list[float]]:
    """One engine call as a training unit (every completion token generated) and the engine's
    reported log-probs."""
    req = EngineRequest(
        prompt=context, max_tokens=12, logprobs=0, ignore_eos=True,
        sampling=SamplingParams(temperature=0.9, seed=seed),
    )  # fmt: skip
    engine.add(req)
    toks: list[int] = []
    lps: list[float] = []
    while engine.has_work:
        for o in engine.step():
            toks += o.token_ids
            lps += [lp.logprob for lp in o.logprobs]
    return UnitTokens(context=context, completion=toks, trained=[True] * len(toks)), lps


def _trajectory(
    engine: Engine, prompt: list[int], seed: int
) -> list[tuple[UnitTokens, list[float]]]:
    """A fork/join-shaped trajectory: a first call, two threads continuing its output, a join."""
    first, lp1 = _call(engine, prompt, seed)
    base = prompt + first.completion
    threads = [_call(engine, base + [5, i], seed + i) for i in (1, 2)]
    join = _call(engine, base + threads[0][0].completion + threads[1][0].completion, seed + 3)
    return [(first, lp1), *threads, join]


@torch.no_grad()
def test_sampler_logprobs_equal_engine_bits_and_gap_is_reported(model):
    engine = Engine(model, config=EngineConfig(block_tokens=BLOCK, step_tokens=40))
    trajs = [
        _trajectory(engine, [3 + (i * 7 + s) % 60 for i in range(n)], s)
        for s, n in ((0, 9), (1, 50))
    ]
    for traj in trajs:
        for unit, reported in traj:
            got = sampler_call_logprobs(model, unit, block_tokens=BLOCK)
            assert got.tolist() == reported  # bitwise: trainer = sampler
    units = [[u for u, _ in t] for t in trajs]
    gap = sampler_gap(model, units, block_tokens=BLOCK, backend="dense")
    assert math.isfinite(gap) and gap < 0.25  # other kernels (dense masked attention): rounding
    _, info = broadcast_pg_loss(
        model, units, [0.5, -0.5], backend="dense", sampler_block_tokens=BLOCK
    )
    assert info.sampler_gap == gap
