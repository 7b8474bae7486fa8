"""Backend "reference": every stream's view materialised explicitly, in float64.

For each stream and layer it gathers the visible keys of every segment in view order, rotates
each segment's keys from segment-local positions to its offset in that view (a key rotation, where
the other backends rotate queries), applies RoPE to the queries at their absolute view positions,
and runs one masked softmax (key position <= query position). It writes the new K/V through
`KVStore.write`, one stream at a time. Slow and obviously correct: the twin that every other
backend is tested against (`Runner(..., attention="reference")`).
"""

from __future__ import annotations

import torch

from plait.runtime.attention.context import Backend, always_available
from plait.runtime.attention.plan import StepPlan
from plait.runtime.rope import Rope, apply_rotary
from plait.runtime.segments import KVStore


class ReferenceAttention:
    """Attention context that materialises views (same write semantics as the other backends)."""

    def __init__(self, store: KVStore, rope: Rope, plan: StepPlan) -> None:
        self.store, self.rope, self.plan = store, rope, plan
        device = store.device
        kcos, ksin = rope.cos_sin(torch.tensor(plan.key_positions, device=device), store.dtype)
        self.key_cos, self.key_sin = kcos[:, None], ksin[:, None]  # (T, 1, R)
        self.positions = torch.tensor(plan.positions, device=device)  # (T,)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        T, Hq, D = q.shape
        k = apply_rotary(k, self.key_cos, self.key_sin)  # (T, Hkv, D) at segment-local positions
        for seg, a, n, start in zip(plan.write_to, plan.starts, plan.lengths, plan.write_starts):
            kv = (k[a : a + n].transpose(0, 1), v[a : a + n].transpose(0, 1))  # (Hkv, n, D)
            self.store.write(seg, layer, start, *kv)
        out = torch.empty(T, Hq, D, dtype=torch.float64, device=q.device)
        for view, a, n in zip(plan.views, plan.starts, plan.lengths):
            keys, values, key_pos, off = [], [], [], 0
            for seg, visible in view:
                kk = seg.keys(layer, visible).double()  # (Hkv, visible, D)
                delta = torch.tensor([off], device=q.device)
                cos, sin = self.rope.shift_cos_sin(delta, torch.float64)
                keys.append(apply_rotary(kk, cos, sin))
                values.append(seg.values(layer, visible).double())
                key_pos.append(torch.arange(off, off + visible, device=q.device))
                off += visible
            K, V = torch.cat(keys, dim=1), torch.cat(values, dim=1)  # (Hkv, L, D)
            kpos = torch.cat(key_pos)  # (L,)
            qpos = self.positions[a : a + n]  # (n,)
            cos, sin = self.rope.cos_sin(qpos, torch.float64)  # (n, R)
            qq = apply_rotary(q[a : a + n].double(), cos[:, None], sin[:, None]).transpose(0, 1)
            G = Hq // K.shape[0]
            K, V = K.repeat_interleave(G, dim=0), V.repeat_interleave(G, dim=0)  # (Hq, L, D)
            scores = qq @ K.transpose(-1, -2) * D**-0.5  # (Hq, n, L)
            scores = scores.masked_fill(kpos[None, None, :] > qpos[None, :, None], float("-inf"))
            out[a : a + n] = (torch.softmax(scores, dim=-1) @ V).transpose(0, 1)  # (n, Hq, D)
        return out.to(q.dtype).reshape(T, Hq * D)


BACKEND = Backend(
    name="reference",
    summary="float64 materialised views (slow; the twin every backend is tested against)",
    context=ReferenceAttention,
    unavailable=always_available,
)
