"""The ancestor mask's forms agree: parent walk, dense entry/exit, chunked and flex attention."""

from __future__ import annotations

import random

import pytest
import torch

from plait.threads.data.synthetic import random_trajectory
from plait.threads.training.mask import (
    ancestor_attention,
    ancestor_block_mask,
    ancestor_mask_mod,
    block_mask_nbytes,
    dense_mask,
    mask_from_parents,
)
from plait.threads.training.packing import pack_rows


def _row(seed: int, n_traj: int = 2, length: int | None = None):
    rng = random.Random(seed)
    trajs = [random_trajectory(rng, blocks=2).units for _ in range(n_traj)]
    need = sum(len(u.tokens) for t in trajs for u in t)
    rows, _ = pack_rows(trajs, length or need)
    return rows[0]


@pytest.mark.parametrize("seed", range(4))
def test_dense_mask_equals_parent_walk(seed: int) -> None:
    row = _row(seed)
    dm = dense_mask(row.entry, row.exit)
    expect = mask_from_parents(row.parent.tolist())
    assert torch.equal(dm, expect)
    # each row sees exactly depth + 1 keys (root path), padding sees only itself
    assert torch.equal(dm.sum(1), torch.where(row.doc >= 0, row.positions + 1, 1))


def test_mask_mod_matches_dense_mask() -> None:
    row = _row(11)
    mod = ancestor_mask_mod(row.entry, row.exit)
    n = row.length
    qi = torch.arange(n)[:, None].expand(n, n)
    ki = torch.arange(n)[None, :].expand(n, n)
    assert torch.equal(mod(0, 0, qi, ki), dense_mask(row.entry, row.exit))


@pytest.mark.parametrize("hq,hkv", [(4, 2), (4, 4)])
def test_attention_backends_agree(hq: int, hkv: int) -> None:
    row = _row(5, n_traj=3, length=200)  # padded row, several documents
    g = torch.Generator().manual_seed(0)
    t, d = row.length, 16
    q = torch.randn(t, hq, d, generator=g, dtype=torch.float64)
    k = torch.randn(t, hkv, d, generator=g, dtype=torch.float64)
    v = torch.randn(t, hkv, d, generator=g, dtype=torch.float64)
    ref = ancestor_attention(q, k, v, row.entry, row.exit, backend="dense")
    # slow explicit twin: softmax over the parent-walk mask
    m = dense_mask(row.entry, row.exit)
    kk, vv = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
    s = torch.einsum("qhd,khd->hqk", q, kk) / d**0.5
    s = s.masked_fill(~m, float("-inf")).softmax(-1)
    twin = torch.einsum("hqk,khd->qhd", s, vv).reshape(t, hq * d)
    torch.testing.assert_close(ref, twin)
    for chunk in (7, 64, 1024):
        out = ancestor_attention(q, k, v, row.entry, row.exit, backend="chunked", chunk=chunk)
        torch.testing.assert_close(out, ref)
        out = ancestor_attention(
            q, k, v, row.entry, row.exit, backend="chunked", chunk=chunk, key_start=row.key_start
        )
        torch.testing.assert_close(out, ref)
    flex = ancestor_attention(q.float(), k.float(), v.float(), row.entry, row.exit, backend="flex")
    torch.testing.assert_close(flex, ref.float(), atol=1e-5, rtol=1e-5)


def test_block_mask_state_is_small() -> None:
    n = 4096
    entry = torch.arange(n)
    exit_ = torch.full((n,), n - 1)  # one long path: causal
    bm = ancestor_block_mask(entry, exit_)
    assert block_mask_nbytes(bm) < 200_000
    assert block_mask_nbytes(bm) + 2 * 8 * n < n * n // 100


def test_unknown_backend_names_choices() -> None:
    x = torch.zeros(3, 2, 4)
    with pytest.raises(ValueError, match="chunked"):
        ancestor_attention(x, x, x, torch.arange(3), torch.arange(3), backend="nope")  # type: ignore[arg-type]
