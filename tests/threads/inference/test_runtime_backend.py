"""EngineBackend (threads of a block as rows of a private engine over the prefix cache) ==
single-request greedy, and the join reads thread 1's kept K/V instead of recomputing it.

The twin recomputes the whole context for every generated token with a plain causal forward
(no cache, no segments), one request at a time.
"""

from __future__ import annotations

import asyncio
import random

import pytest
import torch

from plait.runtime.attention.dense import causal_context
from plait.runtime.model import DecoderLM
from plait.threads.inference.backend_api import CompletionRequest
from plait.threads.inference.runtime_backend import EngineBackend
from tests.helpers.tiny import tiny_model

VOCAB = 48
STOP, EOS = 5, 6


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def model(request) -> DecoderLM:
    return tiny_model(request.param, seed=1, vocab=VOCAB, intermediate=128, max_position=256)


@torch.no_grad()
def _twin(model: DecoderLM, req: CompletionRequest) -> tuple[list[int], str]:
    ctx, out = list(req.context), []
    for _ in range(min(req.max_tokens, model.config.max_position - len(req.context))):
        logits = model(
            torch.tensor(ctx),
            causal_context(model.rope, len(ctx)),
            logit_rows=torch.tensor([len(ctx) - 1]),
        )
        tok = int(torch.argmax(logits[0]))
        out.append(tok)
        ctx.append(tok)
        if tok in req.stop_token_ids:
            return out, "stop"
        if tok in req.eos_token_ids:
            return out, "eos"
    return out, "length"


def _req(ctx: list[int], n: int = 12) -> CompletionRequest:
    return CompletionRequest(
        context=ctx, max_tokens=n, stop_token_ids=(STOP,), eos_token_ids=(EOS,)
    )


def _check(engine: EngineBackend, model: DecoderLM, reqs: list[CompletionRequest]):
    got = asyncio.run(engine.complete(reqs))
    for req, comp in zip(reqs, got):
        want, reason = _twin(model, req)
        assert comp.tokens == want
        assert comp.finish_reason == reason
    return got


@pytest.mark.parametrize(("seed", "block"), [(0, 4), (1, 4), (0, 64)])
def test_block_streams_equal_single_request_greedy(model: DecoderLM, seed: int, block: int) -> None:
    rng = random.Random(seed)
    engine = EngineBackend.private(model=model, block_tokens=block)
    prompt = [rng.randrange(10, VOCAB) for _ in range(9)]
    # 1) sequential request
    (seq,) = _check(engine, model, [_req(prompt)])
    base = prompt + seq.tokens
    # 2) a block: one request per thread, shared context + distinct headers
    headers = [[7, 8, 10 + i, 9] for i in range(1, 4)]
    steps = engine.stats.steps
    threads = _check(engine, model, [_req(base + h, n=8) for h in headers])
    assert engine.stats.steps - steps <= 1 + max(len(t.tokens) for t in threads)  # one batch
    want = (len(prompt) + len(seq.tokens) - 1) // block * block  # the kept sequential call
    assert all(t.cached_tokens == min(want, (len(base) + 3) // block * block) for t in threads)
    # 3) join: thread 1's kept blocks are read, the rest (threads 2..n) is re-encoded
    merged = list(base)
    for h, t in zip(headers, threads):
        merged += h + t.tokens
    merged.append(7)
    computed = engine.stats.computed_prompt_tokens
    (after,) = _check(engine, model, [_req(merged)])
    thread1 = len(base) + len(headers[0]) + len(threads[0].tokens) - 1  # its last token: no K/V
    assert after.cached_tokens == thread1 // block * block
    # thread 1's K/V are all reused (full blocks + its partial block): only the rest is computed
    assert engine.stats.computed_prompt_tokens - computed == len(merged) - thread1
    assert (block == 64 or engine.stats.kept_tokens > 0) and engine.calls == 3
    assert engine.engine.request_kv_tokens() == 0


def test_diverging_prompt_and_identical_contexts(model: DecoderLM) -> None:
    engine = EngineBackend.private(model=model, block_tokens=2)
    _check(engine, model, [_req([11, 12, 13, 14])])
    (c,) = _check(engine, model, [_req([20, 21, 22])])  # unrelated prompt: nothing cached
    assert c.cached_tokens == 0
    _check(engine, model, [_req([30]), _req([30])])  # one-token, identical contexts
    # budget and logprobs
    got = asyncio.run(
        engine.complete([CompletionRequest(context=[15, 16], max_tokens=3, logprobs=True)])
    )
    assert len(got[0].tokens) == 3 and got[0].finish_reason == "length"
    assert got[0].logprobs is not None and all(lp <= 0 for lp in got[0].logprobs)
    engine.reset()
    assert engine.engine.cache.total_tokens() == 0


def test_script_forces_tokens_and_stops(model: DecoderLM) -> None:
    engine = EngineBackend.private(model=model, script=lambda r: [20, 21, STOP, 22])
    (c,) = asyncio.run(engine.complete([_req([11, 12])]))
    assert c.tokens == [20, 21, STOP] and c.finish_reason == "stop"
    assert engine.stats.steps == 3  # prefill + first pick, then two decode steps
    with pytest.raises(ValueError, match="context"):
        asyncio.run(engine.complete([_req(list(range(10, 40)) * 9)]))
    bad = EngineBackend.private(model=model, script=lambda r: [20, VOCAB + 5])
    with pytest.raises(ValueError, match="token ids must be in"):
        asyncio.run(bad.complete([_req([11, 12]), _req([11, 13])]))
    assert bad.engine.num_running() == bad.engine.num_waiting() == 0  # nothing left behind
