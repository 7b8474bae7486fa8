"""Trainer = sampler on engine-produced trajectories: the exact sampler log-probs of every call
equal, bit for bit, the log-probs the engine reported while sampling it (bf16 where plait's
kernels run); the packed trainer forward's distance to them is reported, and is small."""

from __future__ import annotations

import math

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.engine import Engine, EngineConfig
from plait.threads.training.rl_loss import broadcast_pg_loss
from plait.threads.training.sampler_gap import sampler_call_logprobs, sampler_gap
from tests.helpers.rollouts import fork_join_calls
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


@torch.no_grad()
def test_sampler_logprobs_equal_engine_bits_and_gap_is_reported(model):
    engine = Engine(model, config=EngineConfig(block_tokens=BLOCK, step_tokens=40))
    trajs = [
        fork_join_calls(engine, [3 + (i * 7 + s) % 60 for i in range(n)], s)
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
