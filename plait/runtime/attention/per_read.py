"""The per-read path: each segment attended once for all its readers, then an exact LSE merge.

In every layer a per-read context
  1) rotates the new keys at their segment-local positions and writes all streams' K/V into the
     arena (one indexed copy);
  2) attends each segment once with the stacked, per-reader-rotated queries of all its readers
     (output and log-sum-exp per query row);
  3) merges each row's per-segment partials exactly by log-sum-exp (`merge_gathered`).
Reads of equally sized segments at evenly spaced arena slots (e.g. the Hogwild workers' own
segments) with equal query counts form one `ReadBatch`: one call over a strided view of the
arena, no copy. Two backends share this path and differ in step 2 only: plait's segment kernel
(plait.runtime.attention.segment_kernel) and torch's kernels (plait.runtime.attention.torch_reads);
each builds its own mask tables from the batches' key limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from plait.runtime.attention.partials import from_groups, gather_index, merge_gathered, to_groups
from plait.runtime.attention.plan import SegmentRead, StepPlan
from plait.runtime.rope import Rope, apply_rotary
from plait.runtime.segments import KVStore


@dataclass(slots=True)
class ReadBatch:
    """Reads of `count` equally sized segments at evenly spaced arena slots, attended in one call
    (a single read is a batch of one). Their K/V are one strided view of the arena:
    (B, Hkv, L, D) starting at slot `base` with `stride` slots between segments; no copy."""

    cols: tuple[int, int]  # its columns of the grouped (Hkv, N*G) query layout (read order)
    count: int  # B
    base: int  # arena slot of the first segment
    stride: int  # slots between consecutive segments (their common capacity)
    length: int  # L: keys read per segment (the most visible)
    limits: torch.Tensor | None  # (B, M) last visible key per query (-1: none); None: all L

    def strided(self, arena: torch.Tensor) -> torch.Tensor:
        """(Hkv, slots, D) arena of one layer -> (B, Hkv, L, D) view of the batch's segments."""
        if self.count == 1:  # NOTE: one indexing call; ~25 reads per layer, each call counts
            return arena[None, :, self.base : self.base + self.length]
        s_head, s_slot, s_dim = arena.stride()
        return arena.as_strided(
            (self.count, arena.shape[0], self.length, arena.shape[2]),
            (self.stride * s_slot, s_head, s_slot, s_dim),
            arena.storage_offset() + self.base * s_slot,
        )

    def columns(self, x: torch.Tensor) -> torch.Tensor:
        """The batch's columns of a grouped (Hkv, N*G, *tail) tensor as (B, Hkv, M*G, *tail)."""
        a, b = self.cols
        if self.count == 1:
            return x[None, :, a:b]
        cols = x[:, a:b]
        return cols.view(cols.shape[0], self.count, -1, *cols.shape[2:]).transpose(0, 1)


def batch_reads(reads: list[SegmentRead], group: int) -> tuple[list[SegmentRead], list[ReadBatch]]:
    """Order reads so that runs of evenly spaced, equally sized segments with the same number
    of queries sit together; one `ReadBatch` per run (runs of one included), in read order;
    `group`: query heads per KV head (G)."""
    keyed: dict[tuple[int, int], list[SegmentRead]] = {}
    for r in reads:
        keyed.setdefault((len(r.rows), r.segment.capacity), []).append(r)
    ordered: list[SegmentRead] = []
    batches: list[ReadBatch] = []
    at = 0
    for (m, cap), same in keyed.items():
        same.sort(key=lambda r: r.segment.base)
        runs: list[list[SegmentRead]] = []
        for r in same:  # split into runs of consecutive ranges (base steps by capacity)
            if runs and r.segment.base == runs[-1][-1].segment.base + cap:
                runs[-1].append(r)
            else:
                runs.append([r])
        for run in runs:
            batches.append(_batch(run, (at * group, (at + m * len(run)) * group), cap))
            ordered.extend(run)
            at += m * len(run)
    return ordered, batches


def _batch(run: list[SegmentRead], cols: tuple[int, int], stride: int) -> ReadBatch:
    length = max(r.visible for r in run)
    limits = None
    if any(r.limits is not None or r.visible < length for r in run):
        limits = torch.tensor(
            [
                [min(x, r.visible - 1) for x in r.limits]
                if r.limits is not None
                else [r.visible - 1] * len(r.rows)
                for r in run
            ]
        )  # (B, M)
    return ReadBatch(cols, len(run), run[0].segment.base, stride, length, limits)


class PerReadAttention:
    """Steps 1 and 3 of the module docstring and the read tables; subclasses run step 2 in
    `_reads(layer, qg)`: queries (Hkv, N*G, D) grouped by KV head, N = rows of all reads
    stacked in batch order -> outputs (Hkv, N*G, D) and lse (Hkv, N*G) float32 (lse may be None
    when `plan.single_read`: no merge)."""

    def __init__(self, store: KVStore, rope: Rope, plan: StepPlan) -> None:
        cfg, device, dtype = store.config, store.device, store.dtype
        self.store, self.plan = store, plan
        self.group = cfg.num_heads // cfg.num_kv_heads
        self.slots = store.arena_slots(plan.writes())
        kcos, ksin = rope.cos_sin(torch.tensor(plan.key_positions, device=device), dtype)
        self.key_cos, self.key_sin = kcos[:, None], ksin[:, None]  # (T, 1, R)
        reads, self.batches = batch_reads(plan.reads, self.group)
        self.read_rows = torch.tensor([x for r in reads for x in r.rows], device=device)  # (N,)
        rel = torch.tensor([p for r in reads for p in r.rel], device=device)  # (N,)
        qcos, qsin = rope.cos_sin(rel, dtype)
        self.read_cos, self.read_sin = qcos[:, None], qsin[:, None]  # (N, 1, R)
        self.merge = None if plan.single_read else gather_index(self.read_rows, plan.rows)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, Hq, D = q.shape
        # 1) rotate new keys at segment-local positions and write every stream's K/V (one copy)
        k = apply_rotary(k, self.key_cos, self.key_sin)  # (T, Hkv, D)
        self.store.write_slots(layer, self.slots, k, v)
        # 2) each segment once, for all its readers' queries; queries of all reads are rotated and
        #    regrouped (Hkv, N*G, D) at once, so a read is a column slice of one tensor
        N, Hkv = self.read_rows.shape[0], k.shape[1]
        qg = to_groups(apply_rotary(q[self.read_rows], self.read_cos, self.read_sin), Hkv)
        out_g, lse_g = self._reads(layer, qg)
        out_n = from_groups(out_g, N, Hq)  # (N, Hq, D)
        # 3) exact merge
        if self.merge is None:
            out = torch.empty(T, Hq, D, dtype=q.dtype, device=q.device)
            out[self.read_rows] = out_n
        else:
            if lse_g is None:
                raise RuntimeError("a read backend returned no lse for a step that merges")
            lse_n = from_groups(lse_g, N, Hq)  # (N, Hq)
            out = merge_gathered(out_n, lse_n, *self.merge, q.dtype)
        return out.reshape(T, Hq * D)

    def _reads(self, layer: int, qg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError
