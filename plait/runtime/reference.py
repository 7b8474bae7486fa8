"""The reference attention path: every stream's view materialised explicitly, in float64.

For each stream and layer it gathers the visible keys of every segment in view order, rotates
each segment's keys from segment-local positions to its offset in that view (a key rotation, where
the fast path rotates queries), applies RoPE to the queries at their absolute view positions, and
runs one masked softmax (key position <= query position). Slow and obviously correct: the twin
that the fast path is tested against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from plait.runtime.rope import Rope, apply_rotary
from plait.runtime.segments import KVStore

if TYPE_CHECKING:
    from plait.runtime.runner import StepPlan, StreamInput


class ReferenceAttention:
    """Attention context that materialises views (same write semantics as the fast path)."""

    def __init__(
        self, store: KVStore, rope: Rope, inputs: list[StreamInput], plan: StepPlan, instant: bool
    ) -> None:
        self.store, self.rope, self.inputs, self.plan, self.instant = (
            store,
            rope,
            inputs,
            plan,
            instant,
        )
        self.new_len = {id(inp.write_to): len(inp.tokens) for inp in inputs}

    def _visible(self, seg, inp) -> int:  # noqa: ANN001 - internal
        grow = self.instant or seg is inp.write_to
        return seg.length + (self.new_len.get(id(seg), 0) if grow else 0)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        T, Hq, D = q.shape
        k = apply_rotary(k, plan.key_cos, plan.key_sin)  # (T, Hkv, D) at segment-local positions
        for inp, a, n, slot in zip(self.inputs, plan.starts, plan.lengths, plan.write_slots):
            self.store.write(
                inp.write_to,
                layer,
                slot,
                k[a : a + n].transpose(0, 1),
                v[a : a + n].transpose(0, 1),
            )
        out = torch.empty(T, Hq, D, dtype=torch.float64, device=q.device)
        for inp, a, n in zip(self.inputs, plan.starts, plan.lengths):
            keys, values, key_pos, off = [], [], [], 0
            for seg in inp.view:
                vis = self._visible(seg, inp)
                kk = seg.k[layer, :, :vis].double()  # (Hkv, vis, D)
                cos, sin = self.rope.shift_cos_sin(
                    torch.tensor([off], device=q.device), torch.float64
                )
                keys.append(apply_rotary(kk, cos, sin))
                values.append(seg.v[layer, :, :vis].double())
                key_pos.append(torch.arange(off, off + vis, device=q.device))
                off += vis
            K, V = torch.cat(keys, dim=1), torch.cat(values, dim=1)  # (Hkv, L, D)
            kpos = torch.cat(key_pos)  # (L,)
            qpos = plan.positions[a : a + n]  # (n,)
            cos, sin = self.rope.cos_sin(qpos, torch.float64)  # (n, R)
            qq = apply_rotary(q[a : a + n].double(), cos[:, None], sin[:, None]).transpose(0, 1)
            G = Hq // K.shape[0]
            K, V = K.repeat_interleave(G, dim=0), V.repeat_interleave(G, dim=0)  # (Hq, L, D)
            scores = qq @ K.transpose(-1, -2) * D**-0.5  # (Hq, n, L)
            scores = scores.masked_fill(kpos[None, None, :] > qpos[None, :, None], float("-inf"))
            out[a : a + n] = (torch.softmax(scores, dim=-1) @ V).transpose(0, 1)  # (n, Hq, D)
        return out.to(q.dtype).reshape(T, Hq * D)
