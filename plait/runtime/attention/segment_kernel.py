"""Backend "segment_kernel": the per-read path with plait's compiled segment kernel.

Every read batch is one `kernels.segment_attention` call that writes its rows straight into the
layer's (Hkv, N*G, D) output and (Hkv, N*G) lse buffers (no concatenation); the mask is the
kernel's per-row last visible key, grouped once per step here, not once per layer. The fast
policy uses it for steps longer than the step kernel takes (prefill chunks). Twin: "torch".
"""

from __future__ import annotations

import torch

from plait.runtime import kernels
from plait.runtime.attention.context import Backend
from plait.runtime.attention.per_read import PerReadAttention
from plait.runtime.attention.plan import StepPlan
from plait.runtime.rope import Rope
from plait.runtime.segments import KVStore


class SegmentKernelAttention(PerReadAttention):
    """Per-read attention context whose reads run plait's segment kernel."""

    def __init__(self, store: KVStore, rope: Rope, plan: StepPlan) -> None:
        super().__init__(store, rope, plan)
        G = self.group
        self.limits = [  # (B, M*G) per batch: key limits of every query head's row
            None if bt.limits is None else bt.limits.repeat_interleave(G, dim=-1)
            for bt in self.batches
        ]

    def _reads(self, layer: int, qg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_g = torch.empty_like(qg)  # (Hkv, N*G, D)
        lse_g = torch.empty(qg.shape[:2], dtype=torch.float32, device=qg.device)  # (Hkv, N*G)
        k_arena, v_arena = self.store.k[layer], self.store.v[layer]
        for bt, limits in zip(self.batches, self.limits):
            kernels.segment_attention(
                bt.columns(qg),
                bt.strided(k_arena),
                bt.strided(v_arena),
                limits,
                out=bt.columns(out_g),
                lse=bt.columns(lse_g),
            )
        return out_g, lse_g


BACKEND = Backend(
    name="segment_kernel",
    summary="plait's segment kernel once per read batch, then the exact LSE merge",
    context=SegmentKernelAttention,
    unavailable=kernels.why_not,
)
