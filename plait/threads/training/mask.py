"""The ancestor-only attention mask of a packed trie, in O(N) state, and attention that applies it.

A flat trie node i has entry time `entry[i]` (its pre-order index) and exit time `exit[i]` (the
last index of its subtree). Key j is visible to query i iff j is an ancestor of i or i itself:

    entry[j] <= entry[i]  and  exit[i] <= exit[j]

Forms of the same mask:
- `mask_from_parents`: walks parent pointers (slow, obviously correct; the twin for tests).
- `dense_mask`: the (N, N) bool matrix from entry/exit (small N only: N^2 bytes).
- `ancestor_mask_mod` / `ancestor_block_mask`: a FlexAttention `mask_mod` over the two int vectors
  (8 bytes per token) and its BlockMask (O((N/128)^2) ints).
- `ancestor_attention(..., backend="chunked")`: computes each query block's mask rows on the fly,
  so no N x N tensor ever exists (memory O(chunk * N)); works on CPU without compilation.
Padding nodes (entry = exit = own index) see only themselves and are seen by nobody else.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

Backend = Literal["dense", "chunked", "flex"]
BACKENDS = ("dense", "chunked", "flex")


def mask_from_parents(parent: Sequence[int]) -> torch.Tensor:
    """(N, N) bool: row i is True at i and at every ancestor of i (walks parent pointers)."""
    n = len(parent)
    out = torch.zeros(n, n, dtype=torch.bool)
    for i in range(n):
        j = i
        while j >= 0:
            out[i, j] = True
            j = parent[j]
    return out


def dense_mask(entry: torch.Tensor, exit: torch.Tensor) -> torch.Tensor:
    """(N, N) bool ancestor mask from entry/exit times (N,)."""
    e_q, e_k = entry[:, None], entry[None, :]  # (N, 1), (1, N)
    x_q, x_k = exit[:, None], exit[None, :]
    return (e_k <= e_q) & (x_q <= x_k)  # (N, N)


def ancestor_mask_mod(entry: torch.Tensor, exit: torch.Tensor) -> Callable[..., torch.Tensor]:
    """FlexAttention mask_mod: the mask as a function of (batch, head, q_idx, kv_idx)."""

    def mask_mod(b, h, q_idx, kv_idx):  # noqa: ANN001, ANN202 - FlexAttention calling convention
        return (entry[kv_idx] <= entry[q_idx]) & (exit[q_idx] <= exit[kv_idx])

    return mask_mod


def ancestor_block_mask(entry: torch.Tensor, exit: torch.Tensor, block_size: int = 128):  # noqa: ANN201
    """FlexAttention BlockMask for one packed row (B = H = 1, broadcast over heads)."""
    from torch.nn.attention.flex_attention import create_block_mask

    n = entry.shape[0]
    # NOTE: compiled on CUDA so the N x N mask is never materialised while building the tables
    return create_block_mask(
        ancestor_mask_mod(entry, exit),
        B=None,
        H=None,
        Q_LEN=n,
        KV_LEN=n,
        device=entry.device,
        BLOCK_SIZE=block_size,
        _compile=entry.is_cuda,
    )


def block_mask_nbytes(block_mask: object) -> int:
    """Bytes of tensor state held by a BlockMask (its block index tables)."""
    total = 0
    for name in (
        "kv_num_blocks",
        "kv_indices",
        "full_kv_num_blocks",
        "full_kv_indices",
        "q_num_blocks",
        "q_indices",
        "full_q_num_blocks",
        "full_q_indices",
    ):
        t = getattr(block_mask, name, None)
        if isinstance(t, torch.Tensor):
            total += t.numel() * t.element_size()
    return total


def _expand_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(T, Hkv, D) -> (Hq, T, D) with each kv head repeated for its query group."""
    return x.repeat_interleave(groups, dim=1).transpose(0, 1)


def ancestor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    entry: torch.Tensor,
    exit: torch.Tensor,
    *,
    scale: float | None = None,
    backend: Backend = "chunked",
    chunk: int = 512,
    key_start: torch.Tensor | None = None,
    block_mask: object | None = None,
) -> torch.Tensor:
    """Attention of every node over its ancestors (RoPE already applied to q and k).

    Args:
        q: (T, Hq, D) queries; k, v: (T, Hkv, D) with Hq a multiple of Hkv (GQA).
        entry, exit: (T,) int entry/exit times of the packed row.
        scale: softmax scale, default 1/sqrt(D).
        backend: "dense" (N x N mask), "chunked" (mask rows per query block), "flex".
        chunk: query rows per block for "chunked".
        key_start: (T,) optional lower bound of each query's visible keys (its document's first
            row); lets "chunked" skip other documents' keys. Must not hide an ancestor.

    Returns:
        (T, Hq * D) attention output.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
    t, hq, d = q.shape
    hkv = k.shape[1]
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of kv heads ({hkv})")
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    groups = hq // hkv
    qh = q.transpose(0, 1)  # (Hq, T, D)
    kh, vh = _expand_kv(k, groups), _expand_kv(v, groups)  # (Hq, T, D)
    if backend == "dense":
        mask = dense_mask(entry, exit)  # (T, T)
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=scale)
    elif backend == "chunked":
        parts = []
        for a in range(0, t, chunk):
            b = min(a + chunk, t)
            # NOTE: ancestors precede their descendants in pre-order, so keys [lo, b) suffice.
            lo = 0 if key_start is None else int(key_start[a:b].min())
            m = (entry[None, lo:b] <= entry[a:b, None]) & (exit[a:b, None] <= exit[None, lo:b])
            parts.append(
                F.scaled_dot_product_attention(
                    qh[:, a:b], kh[:, lo:b], vh[:, lo:b], attn_mask=m, scale=scale
                )
            )  # (Hq, b - a, D)
        out = torch.cat(parts, dim=1)
    else:
        bm = ancestor_block_mask(entry, exit) if block_mask is None else block_mask
        out = _flex(q.is_cuda)(qh[None], kh[None], vh[None], block_mask=bm, scale=scale)[0]
        # (Hq, T, D)
    return out.transpose(0, 1).reshape(t, hq * d)  # (T, Hq*D)


_COMPILED: dict[bool, Callable[..., torch.Tensor]] = {}


def _flex(compiled: bool) -> Callable[..., torch.Tensor]:
    """flex_attention, compiled once per process on CUDA (eager elsewhere: unfused, small N)."""
    if compiled not in _COMPILED:
        from torch.nn.attention.flex_attention import flex_attention

        fn = torch.compile(flex_attention) if compiled else flex_attention
        _COMPILED[compiled] = fn
    return _COMPILED[compiled]
