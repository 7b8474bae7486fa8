"""Batch invariance on the real smollm2-135m in bf16 (the case the issue was filed from): greedy
and seeded completions of a prompt are the same tokens and log-prob bits alone and among 15
other requests, and a long prompt gives the same answer again once its prefix is cached."""

from __future__ import annotations

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.engine import Engine, EngineConfig, EngineRequest, SampleOutput
from plait.runtime.loading.bundled import BUNDLED, bundled_status
from plait.runtime.sampling import SamplingParams

pytestmark = pytest.mark.model
WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 64)
CONFIG = EngineConfig(block_tokens=64, step_tokens=256)
QUESTIONS = [
    "Write a haiku about the sea.",
    "What is 17 times 23? Explain step by step.",
    "List three uses of a paperclip.",
    "Why is the sky blue?",
]


@pytest.fixture(scope="module")
def lm():
    if WHY_NOT:
        pytest.skip(f"batch invariance needs plait's kernels: {WHY_NOT}")
    if not bundled_status(BUNDLED["smollm2-135m"]).installed:
        pytest.skip("smollm2-135m is not installed (make install)")
    from plait.runtime import load_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same bits with any thread count; fewer waits on a loaded box
    yield load_model("smollm2-135m", dtype="bf16")
    torch.set_num_threads(threads)


def _req(ids: list[int], seed: int | None) -> EngineRequest:
    sampling = SamplingParams() if seed is None else SamplingParams(temperature=0.8, seed=seed)
    return EngineRequest(prompt=ids, max_tokens=24, sampling=sampling, logprobs=0)


def _run(engine: Engine, reqs: list[EngineRequest]) -> list[list[tuple[int, float]]]:
    ids = [engine.add(r) for r in reqs]
    out: dict[str, list[tuple[int, float]]] = {rid: [] for rid in ids}
    while engine.has_work:
        for o in engine.step():
            if isinstance(o, SampleOutput):
                out[o.request_id] += [(t, lp.logprob) for t, lp in zip(o.token_ids, o.logprobs)]
    return [out[rid] for rid in ids]


@torch.no_grad()
def test_alone_equals_beside_fifteen_others_and_warm_cache(lm):
    prompts = [lm.chat_prompt_ids(q) for q in QUESTIONS]
    long = lm.chat_prompt_ids(" ".join(QUESTIONS * 12))  # ~500 tokens: several cached blocks
    targets = [_req(prompts[0], None), _req(prompts[1], 1234), _req(long, None)]
    alone = [_run(Engine(lm.model, config=CONFIG), [r])[0] for r in targets]
    others = [_req(prompts[i % 4], None if i % 2 else 7 + i) for i in range(13)]
    engine = Engine(lm.model, config=CONFIG)
    together = _run(engine, [others[0], *targets, *others[1:]])[1:4]
    assert together == alone
    again = _run(engine, [_req(long, None)])[0]  # its prefix blocks now come from the cache
    assert engine.cache.hit_rate() > 0
    assert again == alone[2]
