"""Backend "step_kernel": a step's whole attention in one call of plait's step kernel per layer.

`kernels.step_attention` rotates and writes the new keys, rotates each query row for every
segment it reads and runs one online softmax per row across all its segments (the exact merge),
where the per-read path spends ~15 small torch ops per layer around its segment calls. Its work
splits over KV heads (x query-head chunks) only, which suits decode steps: the fast policy uses
it for steps of up to `STEP_KERNEL_MAX_ROWS` new tokens. Tables (built once per step): one row
per read [first entry, end entry, base slot, visible keys] and per entry (a query row reading a
segment) its row, last visible key and float32 query rotation. Twin: the per-read backends.
"""

from __future__ import annotations

import torch

from plait.runtime import kernels
from plait.runtime.attention.context import Backend
from plait.runtime.attention.plan import StepPlan
from plait.runtime.rope import Rope
from plait.runtime.segments import KVStore

STEP_KERNEL_MAX_ROWS = 64
"""Largest step (new tokens of all streams) that the fast policy sends to the step kernel; longer
steps (prefill chunks) take the segment kernel, whose work also splits over segments."""


class StepKernelAttention:
    """Attention context that runs `kernels.step_attention` once per layer."""

    def __init__(self, store: KVStore, rope: Rope, plan: StepPlan) -> None:
        self.store = store
        self.slots = store.arena_slots(plan.writes())
        kcos, ksin = rope.cos_sin(torch.tensor(plan.key_positions), torch.float32)  # (T, R)
        self.key_cos, self.key_sin = kcos, ksin
        table: list[list[int]] = []
        rows: list[int] = []
        rel: list[int] = []
        limits: list[int] = []
        for r in plan.reads:
            table.append([len(rows), len(rows) + len(r.rows), r.segment.base, r.visible])
            rows += r.rows
            rel += r.rel
            limits += r.limits if r.limits is not None else [r.visible - 1] * len(r.rows)
        self.read_table = torch.tensor(table, dtype=torch.long)  # (n, 4)
        self.entry_rows = torch.tensor(rows, dtype=torch.long)  # (N,)
        self.entry_limits = torch.tensor(limits, dtype=torch.long)  # (N,)
        self.entry_cos, self.entry_sin = rope.cos_sin(torch.tensor(rel), torch.float32)  # (N, R)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, Hq, D = q.shape
        return kernels.step_attention(
            q,
            k,
            v,
            self.store.k[layer],
            self.store.v[layer],
            self.store.slot_index(self.slots),
            self.key_cos,
            self.key_sin,
            self.read_table,
            self.entry_rows,
            self.entry_limits,
            self.entry_cos,
            self.entry_sin,
        ).view(T, Hq * D)


BACKEND = Backend(
    name="step_kernel",
    summary="plait's step kernel: write, all reads and the merge in one call per layer",
    context=StepKernelAttention,
    unavailable=kernels.why_not,
)
