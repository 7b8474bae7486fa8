"""Attention twins for tests: the scatter log-sum-exp merge, the reference of `merge_gathered`."""

from __future__ import annotations

import math

import torch


def scatter_merge(
    total_rows: int,
    rows: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Exact LSE merge of stacked partials, by scatter (the obviously-correct twin).

    Args:
        total_rows: T, the number of query rows.
        rows: (N,) the query row of each partial (a row appears once per segment it read).
        out: (N, H, D) partial outputs; lse: (N, H) their log-sum-exps (-inf = saw nothing).
    Returns:
        (T, H, D) attention output; rows that saw no key at all are 0.
    """
    N, H, D = out.shape
    idx = rows[:, None].expand(N, H)
    m = torch.full((total_rows, H), -math.inf, device=out.device)  # (T, H)
    m.scatter_reduce_(0, idx, lse, reduce="amax")
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    w = torch.exp(lse - m[rows])  # (N, H)
    acc = torch.zeros(total_rows, H, D, device=out.device).index_add_(
        0, rows, out.float() * w[..., None]
    )
    den = torch.zeros(total_rows, H, device=out.device).index_add_(0, rows, w)
    den = torch.where(den == 0, torch.ones_like(den), den)
    return (acc / den[..., None]).to(dtype)  # (T, H, D)
