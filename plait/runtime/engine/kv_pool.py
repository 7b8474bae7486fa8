"""A KV store for a long-running engine: freed ranges are reused (first fit), so serving never
creeps the arena upward.

`KVStore` allocates with a bump pointer: freeing a segment below the highest live one leaves a
hole that is reused only once everything above it is gone. Under continuous batching requests end
in any order and a newer request is always live above the older ones, so the pointer would only
climb. `KVPool` keeps those holes in a sorted free list (coalesced on free) and allocates from
the first one that fits, falling back to the store's own allocation (at the top, doubling the
arena when full: the engine's budget bounds the slots reserved, and fragmentation can make the
arena larger than that, by doublings, never by a creeping pointer). `reserve` returning a segment's
old range to the list closes the other leak (a regrown segment's old range). Everything else
(views, writes, moves) is the store's.

Twin: the plain `KVStore` (tests/runtime/engine/test_kv_pool.py checks identical contents and logits,
and that a churn of allocations keeps the arena bounded).
"""

from __future__ import annotations

import bisect

import torch

from plait.runtime.config import ModelConfig
from plait.runtime.rope import Rope
from plait.runtime.segments import KVStore, Segment


class KVPool(KVStore):
    """`KVStore` with a free list of released slot ranges (see the module docstring).

    Args:
        config, dtype, device, rope: as `KVStore`.
        slots: arena size allocated up front (the engine passes its KV budget, so the arena
            starts large enough for everything the budget admits).
    """

    def __init__(
        self,
        config: ModelConfig,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        rope: Rope | None = None,
        slots: int = 1024,
    ) -> None:
        super().__init__(config, dtype, device, rope, slots)
        self.holes: list[tuple[int, int]] = []  # (base, size) free ranges below `top`, by base

    def _allocate(self, capacity: int) -> int:
        for i, (base, size) in enumerate(self.holes):
            if size >= capacity:
                if size == capacity:
                    del self.holes[i]
                else:
                    self.holes[i] = (base + capacity, size - capacity)
                return base
        return super()._allocate(capacity)

    def free(self, seg: Segment) -> None:
        if not any(s is seg for s in self.segments):
            return  # already freed (cancel and finish may race to free the same segment)
        base, capacity = seg.base, seg.capacity
        super().free(seg)
        self._release(base, capacity)

    def reserve(self, seg: Segment, extra: int) -> None:
        base, capacity = seg.base, seg.capacity
        super().reserve(seg, extra)
        if seg.base != base:  # moved to a larger range: the old one is free now
            self._release(base, capacity)

    def _release(self, base: int, size: int) -> None:
        """Return [base, base+size) to the free list, merging with adjacent holes; holes at or
        above the top (recomputed by `KVStore.free`) are dropped: the bump pointer covers them."""
        i = bisect.bisect_left(self.holes, (base, size))
        self.holes.insert(i, (base, size))
        if i + 1 < len(self.holes) and base + size == self.holes[i + 1][0]:
            size += self.holes.pop(i + 1)[1]
            self.holes[i] = (base, size)
        if i > 0 and self.holes[i - 1][0] + self.holes[i - 1][1] == base:
            prev = self.holes.pop(i - 1)
            self.holes[i - 1] = (prev[0], prev[1] + size)
        while self.holes and self.holes[-1][0] >= self.top:
            self.holes.pop()

    def free_slots(self) -> int:
        """Slots not held by any live segment (holes plus the arena above the top)."""
        return sum(size for _, size in self.holes) + self.k.shape[2] - self.top

    def reserved_slots(self) -> int:
        """Slots held by live segments (their capacities)."""
        return sum(s.capacity for s in self.segments)
