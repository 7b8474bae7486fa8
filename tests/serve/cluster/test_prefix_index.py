"""The router's block-hash prefix index against an obviously-correct twin (the token lists each
replica was sent, compared block by block), its LRU bound, and the routing policy."""

from __future__ import annotations

import random

import pytest

from plait.serve.cluster.prefix_index import PrefixIndex, RouterConfig, chain


def twin_depth(sent: list[list[int]], prompt: list[int], block: int) -> int:
    """Full blocks of `prompt` that start one of the `sent` prompts (no hashing, no eviction)."""
    best = 0
    for s in sent:
        n = 0
        while (n + 1) * block <= min(len(s), len(prompt)) and \
                s[n * block:(n + 1) * block] == prompt[n * block:(n + 1) * block]:  # fmt: skip
            n += 1
        best = max(best, n)
    return best


@pytest.mark.parametrize("seed", range(5))
def test_match_equals_the_twin_on_random_prompts(seed):
    rng = random.Random(seed)
    block = rng.choice([1, 2, 4, 16])
    index = PrefixIndex(RouterConfig(block_tokens=block, capacity_tokens=10**9))
    bases = [[rng.randrange(5) for _ in range(rng.randrange(1, 60))] for _ in range(4)]
    sent: dict[str, list[list[int]]] = {"a": [], "b": [], "c": []}

    def prompt() -> list[int]:
        base = rng.choice(bases)
        return base[: rng.randrange(len(base) + 1)] + [
            rng.randrange(5) for _ in range(rng.randrange(8))
        ]

    for _ in range(60):
        tenant, p = rng.choice(sorted(sent)), prompt()
        index.insert(tenant, chain(p, block))
        sent[tenant].append(p)
        q = prompt()
        want = {t: twin_depth(ps, q, block) for t, ps in sent.items()}
        got = index.match(chain(q, block))
        assert {t: got.get(t, 0) for t in sent} == want


def test_eviction_keeps_whole_prefixes_and_the_bound():
    rng = random.Random(0)
    index = PrefixIndex(RouterConfig(block_tokens=4, capacity_tokens=40))  # 10 keys
    for _ in range(200):
        p = [rng.randrange(3) for _ in range(rng.randrange(4, 48))]
        index.insert("a", chain(p, 4))
        keys = index.tenants["a"].keys
        assert len(keys) <= 10
    # every prefix the index still claims is whole: a matched depth d means all d blocks held
    for _ in range(200):
        q = [rng.randrange(3) for _ in range(48)]
        ks = chain(q, 4)
        d = index.match(ks).get("a", 0)
        assert all(k in index.tenants["a"].keys for k in ks[:d])
    index.remove("a")
    assert index.entries() == 0 and not index.match(ks)


def test_policy_prefix_then_load_then_smallest_tree():
    index = PrefixIndex(RouterConfig(block_tokens=2, imbalance=3))
    a, b = chain([1, 2, 3, 4, 5, 6], 2), chain([9, 9, 9, 9], 2)
    index.routed("r1", a)
    index.routed("r2", b)
    assert index.choose(["r1", "r2"], {}, chain([1, 2, 3, 4, 7, 7], 2))[0] == ["r1"]
    assert index.choose(["r1", "r2"], {}, b)[0] == ["r2"]
    # imbalanced: the least loaded wins over the prefix
    assert index.choose(["r1", "r2"], {"r1": 9, "r2": 2}, a)[0] == ["r2"]
    assert index.choose(["r1", "r2"], {"r1": 5, "r2": 2}, a)[0] == ["r1"]  # within 3
    # no prefix anywhere: the smallest tree (r2 holds 2 keys, r1 3), a new replica first
    assert index.choose(["r1", "r2"], {}, chain([7, 7], 2))[0] == ["r2"]
    assert index.choose(["r1", "r2", "r3"], {}, chain([7, 7], 2))[0] == ["r3"]
    assert index.choose([], {}, a) == []
    t = index.tenants["r1"]
    assert t.routed == 1 and t.matched_tokens == 0 and t.prompt_tokens == 6


def test_round_robin_cycles_and_bad_settings_raise():
    index = PrefixIndex(RouterConfig(policy="round_robin"))
    firsts = [index.choose(["x", "y", "z"], {}, [1])[0][0] for _ in range(6)]
    assert firsts == ["x", "y", "z", "x", "y", "z"]
    with pytest.raises(ValueError, match="policy"):
        RouterConfig(policy="random")
    with pytest.raises(ValueError, match="block_tokens"):
        RouterConfig(block_tokens=0)
