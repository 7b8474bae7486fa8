"""KVPool (free-list allocation) against its twin, the bump-allocating KVStore."""

from __future__ import annotations

import random

import torch

from plait.runtime.engine.kv_pool import KVPool
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from tests.helpers.tiny import tiny_model


def test_pool_reuses_holes_and_stays_bounded_under_churn():
    m = tiny_model("llama")
    pool = KVPool(m.config, m.dtype, rope=m.rope, slots=512)
    bump = KVStore(m.config, m.dtype, rope=m.rope, slots=512)
    rng = random.Random(0)
    live_pool, live_bump = [], []
    for _ in range(400):  # requests end in any order; at most ~8 live at once
        if live_pool and (len(live_pool) > 7 or rng.random() < 0.45):
            i = rng.randrange(len(live_pool))
            pool.free(live_pool.pop(i))
            bump.free(live_bump.pop(i))
        else:
            cap = rng.randint(1, 48)
            live_pool.append(pool.new_segment(cap))
            live_bump.append(bump.new_segment(cap))
        spans = sorted((s.base, s.base + s.capacity) for s in pool.segments)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "overlapping segments"
        assert pool.reserved_slots() + pool.free_slots() == pool.k.shape[2]
    assert pool.k.shape[2] <= 1024 < bump.k.shape[2]  # the bump pointer crept, the pool did not
    for s in list(live_pool):
        pool.free(s)
    assert pool.top == 0 and not pool.holes


def test_pool_and_store_give_the_same_logits():
    m = tiny_model("qwen2", seed=5)
    outs = []
    for cls in (KVPool, KVStore):
        store = cls(m.config, m.dtype, rope=m.rope, slots=64)
        runner = Runner(m, store)
        junk = [store.new_segment(8) for _ in range(4)]
        store.free(junk[1])
        store.free(junk[2])  # a hole of 16 slots in the pool
        a, b = store.new_segment(10), store.new_segment(5)
        runner.prefill(a, list(range(3, 13)))
        with torch.inference_mode():
            runner.step([StreamInput([20, 21], [a, b], b)])
            store.reserve(b, 20)  # regrowth: the pool takes the old range back
            outs.append(runner.step([StreamInput([22], [a, b], b)]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
