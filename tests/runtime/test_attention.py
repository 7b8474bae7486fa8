"""LSE merge of per-segment partial attention equals monolithic softmax attention."""

from __future__ import annotations

import math

import pytest
import torch

from plait.runtime.attention import gather_index, merge_gathered, partial_attention
from tests.helpers.attention import scatter_merge


def monolithic(q, k, v, limit):
    # q (M, Hq, D), k/v (Hkv, L, D), limit (M,) -> (M, Hq, D) in float64
    M, Hq, D = q.shape
    G = Hq // k.shape[0]
    K, V = k.double().repeat_interleave(G, 0), v.double().repeat_interleave(G, 0)
    s = torch.einsum("mhd,hld->mhl", q.double(), K) / math.sqrt(D)
    s = s.masked_fill(torch.arange(k.shape[1])[None, None, :] > limit[:, None, None], -math.inf)
    p = torch.softmax(s, -1).nan_to_num(0.0)
    return torch.einsum("mhl,hld->mhd", p, V)


@pytest.mark.parametrize("impl", ["math", "sdpa"])
@pytest.mark.parametrize("seed", range(6))
def test_random_segmentations_merge_exactly(impl, seed):
    g = torch.Generator().manual_seed(seed)
    M, Hq, Hkv, D, L = 7, 6, 2, 16, 50
    q = torch.randn(M, Hq, D, generator=g)
    k, v = torch.randn(Hkv, L, D, generator=g), torch.randn(Hkv, L, D, generator=g)
    limit = torch.randint(-1, L, (M,), generator=g)  # -1: a row that sees nothing at all
    limit[0] = -1
    cuts = sorted(torch.randint(0, L + 1, (4,), generator=g).tolist())
    bounds = [0, *cuts, L]  # may include empty segments
    partials = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        lim = limit - a  # local limits; rows whose limit < a see none of this segment
        out, lse = partial_attention(
            q, k[:, a:b], v[:, a:b], lim.clamp(max=max(b - a - 1, -1)), impl
        )
        assert not torch.isnan(out).any()
        partials.append((torch.arange(M), out, lse))
    rows = torch.cat([p[0] for p in partials])
    merged = scatter_merge(
        M,
        rows,
        torch.cat([p[1] for p in partials]),
        torch.cat([p[2] for p in partials]),
        torch.float32,
    )
    ref = monolithic(q, k, v, limit)
    assert torch.allclose(merged.double(), ref, atol=1e-5)
    assert torch.all(merged[0] == 0)  # fully masked row: zeros, no NaN


def test_partial_lse_is_logsumexp():
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(3, 4, 8, generator=g),
        torch.randn(2, 10, 8, generator=g),
        torch.randn(2, 10, 8, generator=g),
    )
    for impl in ("math", "sdpa"):
        _, lse = partial_attention(q, k, v, None, impl)
        s = torch.einsum("mhd,hld->mhl", q, k.repeat_interleave(2, 0)) / math.sqrt(8)
        assert torch.allclose(lse, torch.logsumexp(s, -1), atol=1e-5)


@pytest.mark.parametrize("seed", range(4))
def test_merge_gathered_equals_scatter_merge(seed):
    """The runner's gather merge == the scatter reference, ragged and uniform partial counts."""
    g = torch.Generator().manual_seed(seed)
    T, H, D = 7, 3, 8
    uniform = seed % 2 == 0
    counts = torch.full((T,), 3) if uniform else torch.randint(1, 5, (T,), generator=g)
    rows = torch.repeat_interleave(torch.arange(T), counts)
    rows = rows[torch.randperm(rows.shape[0], generator=g)]  # partials in any order
    N = rows.shape[0]
    out = torch.randn(N, H, D, generator=g)
    lse = 3 * torch.randn(N, H, generator=g)
    first = {int(r): n for n, r in reversed(list(enumerate(rows)))}
    for n in range(N):  # some partials saw nothing, but never all of a row's
        if n not in first.values() and torch.rand((), generator=g) < 0.3:
            lse[n] = -math.inf
            out[n] = 0
    index, pad = gather_index(rows, T)
    assert (pad is None) == uniform
    fast = merge_gathered(out, lse, index, pad, torch.float32)
    ref = scatter_merge(T, rows, out, lse, torch.float32)
    assert torch.allclose(fast, ref, atol=1e-6)
