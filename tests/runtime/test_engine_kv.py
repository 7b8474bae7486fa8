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


def test_growth_in_place_or_moved_keeps_every_token_and_counts_held_slots():
    m = tiny_model("llama")
    pool = KVPool(m.config, m.dtype, rope=m.rope, slots=256, unit=8)
    rng = random.Random(1)
    live: dict[int, tuple] = {}  # id -> (segment, its K (L, Hkv, n, D), V) as written
    shape = (m.config.num_layers, m.config.num_kv_heads, 0, m.config.head_dim)
    for _ in range(300):
        r = rng.random()
        if live and (r < 0.2 or len(live) > 8):
            seg, _, _ = live.pop(rng.choice(list(live)))
            pool.free(seg)
        elif live and r < 0.7:  # append a few tokens, growing first
            key = rng.choice(list(live))
            seg, k, v = live[key]
            n = rng.randint(1, 12)
            pool.grow(seg, seg.length + n)
            nk, nv = torch.randn(*shape[:2], n, shape[3]), torch.randn(*shape[:2], n, shape[3])
            for layer in range(shape[0]):
                pool.write(seg, layer, seg.length, nk[layer], nv[layer])
            seg.length += n
            live[key] = (seg, torch.cat([k, nk], 2), torch.cat([v, nv], 2))
        else:
            seg = pool.new_segment(rng.randint(1, 8))
            live[seg.id] = (seg, torch.zeros(shape), torch.zeros(shape))
        spans = sorted((s.base, s.base + s.capacity) for s in pool.segments)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "overlapping segments"
        assert pool.held == sum(s.capacity for s in pool.segments)
        for seg, k, v in live.values():  # the twin: what was written, in order
            assert torch.equal(seg.k[:, :, : seg.length], k) and torch.equal(
                seg.v[:, :, : seg.length], v
            )
    assert pool.grown_in_place > 0 and pool.stats.regrowths > 0 and pool.relocated_tokens > 0
