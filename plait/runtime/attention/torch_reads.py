"""Backend "torch": the per-read path with torch's kernels, on any device.

Every read batch is one `batched_attention` call: torch's scaled-dot-product kernels with
log-sum-exp (`impl="sdpa"`: the CPU flash kernel, CUDA flash / efficient attention) where the
device has them, a plain matmul softmax elsewhere (`impl="math"`). The mask is an additive bias
plus the rows that see no key, built once per step here. The fast policy uses it wherever
plait's kernels do not run; it is the twin of both kernel backends.
"""

from __future__ import annotations

import math

import torch

from plait.runtime.attention.context import Backend, always_available
from plait.runtime.attention.partials import batched_attention, limit_bias
from plait.runtime.attention.per_read import PerReadAttention
from plait.runtime.attention.plan import StepPlan
from plait.runtime.rope import Rope
from plait.runtime.segments import KVStore


class TorchAttention(PerReadAttention):
    """Per-read attention context whose reads run torch's kernels."""

    def __init__(self, store: KVStore, rope: Rope, plan: StepPlan) -> None:
        super().__init__(store, rope, plan)
        self.impl = "sdpa" if store.device.type in ("cpu", "cuda") else "math"
        self.masks: list[tuple[torch.Tensor | None, torch.Tensor | None]] = []
        for bt in self.batches:  # (B, 1, M*G, L) additive bias, (B, M*G) rows that see nothing
            if bt.limits is None:
                self.masks.append((None, None))
                continue
            lims = bt.limits.to(store.device)
            bias = limit_bias(lims, bt.length, self.group, store.dtype)[:, None]
            empty = lims.repeat_interleave(self.group, dim=-1) < 0
            self.masks.append((bias, empty if bool(empty.any()) else None))

    def _reads(self, layer: int, qg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """All reads of one layer, concatenated in read order; lse only when a merge needs it."""
        Hkv, _, D = qg.shape
        outs, lses = [], []
        k_arena, v_arena = self.store.k[layer], self.store.v[layer]
        for bt, (bias, empty) in zip(self.batches, self.masks):
            qb = bt.columns(qg)  # (B, Hkv, M*G, D)
            if bt.length == 0:  # nothing stored or visible yet
                out = torch.zeros_like(qb)
                lse = torch.full(qb.shape[:3], -math.inf, device=qg.device)
            else:
                kb, vb = bt.strided(k_arena), bt.strided(v_arena)
                out, lse = batched_attention(qb, kb, vb, bias, empty, self.impl)
            if bt.count == 1:
                outs.append(out[0])  # (Hkv, M*G, D)
                lses.append(lse[0])
            else:
                outs.append(out.transpose(0, 1).reshape(Hkv, -1, D))  # (Hkv, B*M*G, D)
                lses.append(lse.transpose(0, 1).reshape(Hkv, -1))
        return torch.cat(outs, dim=1), None if self.merge is None else torch.cat(lses, dim=1)


BACKEND = Backend(
    name="torch",
    summary="torch's attention kernels once per read batch, then the exact LSE merge",
    context=TorchAttention,
    unavailable=always_available,
)
