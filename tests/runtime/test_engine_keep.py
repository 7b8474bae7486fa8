"""Finished sequences kept in the prefix cache (`cache_output`) and forced tokens.

Twin of a kept block: the same tokens prefilled fresh into a block (their K/V must agree), and the
bare runner loop (greedy output of a prompt that continues a kept sequence is unchanged)."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.engine import Engine, EngineConfig, EngineRequest, SampleOutput
from tests.helpers.engine import reference_greedy
from tests.helpers.tiny import tiny_model


def _prompt(n: int, salt: int = 0) -> list[int]:
    return [(i * 29 + salt * 7) % 110 + 5 for i in range(n)]


def _tokens(engine: Engine, req: EngineRequest) -> tuple[list[int], int]:
    rid = engine.add(req)
    got, cached = [], -1
    while engine.has_work:
        for o in engine.step():
            if isinstance(o, SampleOutput) and o.request_id == rid:
                got += o.token_ids
                cached = o.cached_tokens
    return got, cached


@pytest.mark.parametrize(("family", "block", "n_prompt"), [("llama", 8, 21), ("qwen2", 16, 40)])
def test_kept_blocks_equal_fresh_prefill_and_continuations_stay_greedy(family, block, n_prompt):
    m = tiny_model(family, seed=5)
    cfg = EngineConfig(block_tokens=block, step_tokens=64, kv_budget_tokens=4096)
    e = Engine(m, config=cfg)
    prompt = _prompt(n_prompt)
    out, _ = _tokens(e, EngineRequest(prompt=prompt, max_tokens=30, cache_output=True))
    assert out == reference_greedy(m, prompt, 30)
    seq = prompt + out[:-1]  # the last token was never fed
    assert e.stats.kept_tokens == len(seq) - (n_prompt - 1) // block * block  # blocks + partial
    assert len(e.cache.partials) == (len(seq) % block > 0)
    assert e.request_kv_tokens() == 0  # kept blocks are cached, not held
    # every kept block holds what prefilling its tokens from scratch computes
    fresh = Engine(m, config=cfg)
    fresh.generate([EngineRequest(prompt=seq + [1], max_tokens=1)])
    kept = {b.tokens: b.segment for b in e.cache.blocks}
    for b in fresh.cache.blocks:
        seg = kept[b.tokens]
        assert seg.length == block
        torch.testing.assert_close(seg.k, b.segment.k, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(seg.v, b.segment.v, atol=2e-5, rtol=1e-4)
    # a prompt that continues the sequence reads the kept blocks and decodes as the twin
    # (its tail starts with the kept partial block: copied, so only the new tokens are computed)
    follow = [*prompt, *out, 7, 8, 9]
    computed = e.stats.computed_prompt_tokens
    got, cached = _tokens(e, EngineRequest(prompt=follow, max_tokens=12))
    assert cached == (len(seq) // block) * block
    assert e.stats.computed_prompt_tokens - computed == len(follow) - len(seq)
    assert got == reference_greedy(m, follow, 12)
    # a prompt that leaves the sequence inside its partial block copies the common part only
    other = [*seq[: len(seq) // block * block + 1], 11, 12]
    computed = e.stats.computed_prompt_tokens
    got, _ = _tokens(e, EngineRequest(prompt=other, max_tokens=5))
    copied = min(len(seq) % block, 1)
    assert (
        e.stats.computed_prompt_tokens - computed == len(other) - len(seq) // block * block - copied
    )
    assert got == reference_greedy(m, other, 5)


def test_keep_respects_the_kv_budget_and_off_by_default():
    m = tiny_model("llama", seed=2)
    e = Engine(m, config=EngineConfig(block_tokens=8, step_tokens=64, kv_budget_tokens=96))
    _tokens(e, EngineRequest(prompt=_prompt(20), max_tokens=30))
    assert e.stats.kept_tokens == 0  # off by default
    for salt in range(4):  # each keeps up to 6 blocks; older unheld ones are evicted for them
        _tokens(e, EngineRequest(prompt=_prompt(20, salt), max_tokens=40, cache_output=True))
        assert e.cache.total_tokens() <= 96
        assert e.store.reserved_slots() <= 96
    assert e.stats.kept_tokens > 0 and e.cache.stats.evicted_blocks > 0


def test_forced_tokens_are_emitted_and_stop_rules_apply():
    m = tiny_model("llama", seed=4)
    e = Engine(m, config=EngineConfig(block_tokens=8))
    prompt = _prompt(12)
    got, _ = _tokens(e, EngineRequest(prompt=prompt, max_tokens=5, forced_tokens=(40, 41, 42)))
    assert got[:3] == [40, 41, 42]  # then greedy continues after the forced ones
    assert got[3:] == reference_greedy(m, [*prompt, 40, 41, 42], 2)
    got, _ = _tokens(
        e,
        EngineRequest(prompt=prompt, max_tokens=9, forced_tokens=(40, 3, 42), stop_token_ids=(3,)),
    )
    assert got == [40, 3] and e.stats.steps > 0
    with pytest.raises(ValueError, match="token ids must be in"):
        e.add(EngineRequest(prompt=prompt, forced_tokens=(10_000,)))


def test_engine_steps_a_given_runner_over_a_pool_only():
    from plait.runtime.engine import KVPool
    from plait.runtime.runner import Runner
    from plait.runtime.shapes import fresh_runner

    m = tiny_model("llama", seed=4)
    with pytest.raises(ValueError, match="KVPool"):
        Engine(m, runner=fresh_runner(m))  # a plain KVStore
    runner = Runner(m, KVPool(m.config, m.dtype, m.device, m.rope))
    e = Engine(m, config=EngineConfig(block_tokens=8), runner=runner)
    assert e.runner is runner and e.store is runner.store
    prompt = _prompt(20)
    assert _tokens(e, EngineRequest(prompt=prompt, max_tokens=6))[0] == reference_greedy(
        m, prompt, 6
    )
