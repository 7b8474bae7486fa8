"""Partial attention over one KV segment with torch's kernels, and the exact log-sum-exp merge.

A query that reads several segments gets one (output, lse) pair per segment; `merge_gathered`
combines them into exactly the softmax attention over the concatenation, from a per-row index
computed once per step (`gather_index`: a gather and a softmax, used by the per-read backends;
its twin, a scatter merge, is tests/helpers/attention.py). Queries of many streams that read the
same segment are stacked and attend to it in one call (the segment is read once).

GQA layout: queries (M, Hq, D) are regrouped to (Hkv, M*G, D) so each KV head is read once for
its G query heads. `impl` picks torch's kernel of `batched_attention`: "sdpa" (torch's
scaled-dot-product kernels with LSE: `_scaled_dot_product_flash_attention_for_cpu` on CPUs, flash
/ efficient attention on GPUs) or "math" (a plain matmul softmax); None = "sdpa" on CPU / CUDA,
else "math". Whether plait's compiled kernels run instead is decided in one place only,
`registry.choose_backend` (the `segment_kernel` and `step_kernel` backends call them).
"""

from __future__ import annotations

import math

import torch


def to_groups(q: torch.Tensor, hkv: int) -> torch.Tensor:
    """(M, Hq, D) -> (Hkv, M*G, D): the G query heads of each KV head side by side."""
    M, Hq, D = q.shape
    G = Hq // hkv
    return q.view(M, hkv, G, D).permute(1, 0, 2, 3).reshape(hkv, M * G, D)  # (Hkv, M*G, D)


def from_groups(x: torch.Tensor, M: int, Hq: int) -> torch.Tensor:
    """Inverse of `to_groups`: (Hkv, M*G, *tail) -> (M, Hq, *tail)."""
    hkv = x.shape[0]
    G = Hq // hkv
    tail = x.shape[2:]
    return x.view(hkv, M, G, *tail).permute(1, 0, 2, *range(3, 3 + len(tail))).reshape(M, Hq, *tail)


def limit_bias(limit: torch.Tensor, length: int, group: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive mask (..., M*G, L) for limits (..., M): key j visible to query m iff j <= limit[m]."""
    keys = torch.arange(length, device=limit.device)
    allowed = keys <= limit.repeat_interleave(group, dim=-1)[..., None]  # (..., M*G, L)
    zero = torch.zeros((), dtype=dtype, device=limit.device)
    return torch.where(allowed, zero, torch.full((), -math.inf, dtype=dtype, device=limit.device))


def partial_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    limit: torch.Tensor | None = None,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of already-rotated queries over one segment.

    Args:
        q: (M, Hq, D) queries, RoPE applied for this segment.
        k, v: (Hkv, L, D) the segment's keys (rotated at local positions) and values.
        limit: (M,) last visible key index per query (keys j <= limit[m]); None = all visible.
        impl: "sdpa", "math" or None (see the module docstring).
    Returns:
        out (M, Hq, D) in q's dtype and lse (M, Hq) float32 (-inf where no key is visible).
    """
    M, Hq, D = q.shape
    hkv = k.shape[0]
    out, lse = grouped_attention(to_groups(q, hkv), k, v, limit, Hq // hkv, impl)
    return from_groups(out, M, Hq), from_groups(lse, M, Hq)


def grouped_attention(
    qg: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    limit: torch.Tensor | None,
    group: int,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`partial_attention` in the grouped layout: qg (Hkv, M*G, D) -> out (Hkv, M*G, D), lse (Hkv, M*G)."""
    if k.shape[1] == 0:
        return torch.zeros_like(qg), torch.full(qg.shape[:2], -math.inf, device=qg.device)
    bias = empty = None
    if limit is not None:
        bias = limit_bias(limit, k.shape[1], group, qg.dtype)[None, None]  # (1, 1, M*G, L)
        empty = limit.repeat_interleave(group)[None] < 0  # (1, M*G)
    out, lse = batched_attention(qg[None], k[None], v[None], bias, empty, impl)
    return out[0], lse[0]


def batched_attention(
    qb: torch.Tensor,
    kb: torch.Tensor,
    vb: torch.Tensor,
    bias: torch.Tensor | None,
    empty: torch.Tensor | None,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Several segments at once (equal query counts), grouped layout, with torch's kernels
    (`grouped_attention` is the B = 1 case).

    Args:
        qb: (B, Hkv, MG, D) queries; kb, vb: (B, Hkv, L, D) keys/values (may be strided views).
        bias: (B, 1, MG, L) additive mask or None; empty: (B, MG) rows that see no key, or None.
        impl: "sdpa", "math" or None (see the module docstring).
    Returns:
        out (B, Hkv, MG, D) and lse (B, Hkv, MG) float32.
    """
    if impl is None:
        impl = "sdpa" if qb.device.type in ("cpu", "cuda") else "math"
    if impl not in ("sdpa", "math"):
        raise ValueError(
            f"impl must be 'sdpa' or 'math' (torch's kernels), got {impl!r}; plait's compiled "
            "kernels run through the attention backends (registry.choose_backend)"
        )
    if impl == "math":
        scores = (qb.float() @ kb.float().transpose(-1, -2)) * qb.shape[
            -1
        ] ** -0.5  # (B, Hkv, MG, L)
        if bias is not None:
            scores = scores + bias.float()
        lse = torch.logsumexp(scores, dim=-1)
        safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)
        out = (torch.exp(scores - safe[..., None]) @ vb.float()).to(qb.dtype)
    elif qb.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            qb, kb, vb, 0.0, False, attn_mask=bias
        )
        lse = lse.float()
    elif bias is None and qb.dtype in (torch.float16, torch.bfloat16):
        res = torch.ops.aten._scaled_dot_product_flash_attention(qb, kb, vb)
        out, lse = res[0], res[1].float()
    else:
        if bias is not None:
            L = kb.shape[2]
            padded = bias.new_zeros(*bias.shape[:-1], -(-L // 16) * 16)
            padded[..., :L] = bias
            bias = padded[..., :L].expand(bias.shape[0], kb.shape[1], *bias.shape[2:])
        res = torch.ops.aten._scaled_dot_product_efficient_attention(qb, kb, vb, bias, True)
        out, lse = res[0], res[1][..., : qb.shape[2]].float()
    if empty is not None:
        out = torch.where(empty[:, None, :, None], torch.zeros_like(out), out)
        lse = torch.where(empty[:, None, :], torch.full_like(lse, -math.inf), lse)
    return out, lse


def gather_index(rows: torch.Tensor, total_rows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """For `merge_gathered`: each row's partials as a (T, R) index into the N stacked partials.

    Args:
        rows: (N,) the query row of each partial; total_rows: T.
    Returns:
        index (T, R) with R = the most partials of any row, and pad (T, R) marking unused entries
        (None when every row has R partials).
    """
    order = torch.argsort(rows, stable=True)  # (N,) partials grouped by row
    counts = torch.bincount(rows, minlength=total_rows)  # (T,)
    width = int(counts.max())
    if bool((counts == width).all()):
        return order.view(total_rows, width), None
    first = torch.cumsum(counts, 0) - counts  # (T,) first grouped position of each row
    sorted_rows = rows[order]
    slot = torch.arange(rows.shape[0], device=rows.device) - first[sorted_rows]
    index = torch.zeros(total_rows, width, dtype=torch.long, device=rows.device)
    index[sorted_rows, slot] = order
    pad = torch.arange(width, device=rows.device)[None, :] >= counts[:, None]  # (T, R)
    return index, pad


def merge_gathered(
    out: torch.Tensor,
    lse: torch.Tensor,
    index: torch.Tensor,
    pad: torch.Tensor | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Exact LSE merge with a precomputed index (see `gather_index`); equals the scatter merge (its twin in tests/helpers/attention.py).

    Args:
        out: (N, H, D) partial outputs; lse: (N, H) their log-sum-exps (-inf = saw nothing).
        index, pad: (T, R) from `gather_index`.
    Every row must see at least one key (true in a step: a query always sees its own
    token); otherwise its output is NaN, where the scatter merge returns 0.
    Returns:
        (T, H, D) attention output.
    """
    lg = lse[index]  # (T, R, H)
    if pad is not None:
        lg = lg.masked_fill(pad[..., None], -math.inf)
    w = torch.softmax(lg, dim=1)  # (T, R, H) each partial's share of its row
    return (w[..., None] * out[index].float()).sum(1).to(dtype)  # (T, H, D)
