"""A KV store for a long-running engine: freed ranges are reused (first fit), segments grow on
demand (in place when the slots after them are free, else relocated), and the slots held are
counted so the engine can admit and preempt by what sequences occupy now.

`KVStore` allocates with a bump pointer: freeing a segment below the highest live one leaves a
hole that is reused only once everything above it is gone. Under continuous batching requests end
in any order and a newer request is always live above the older ones, so the pointer would only
climb. `KVPool` keeps those holes in a sorted free list (coalesced on free) and allocates from
the first one that fits, falling back to the store's own allocation (at the top, doubling the
arena when full: the engine's budget bounds the slots held, and fragmentation can make the
arena larger than that, by doublings, never by a creeping pointer).

Growth (`grow`, and `reserve`, which the runner calls before every step): a segment stays one
contiguous slot range, so every attention backend and kernel reads it unchanged. It grows in place
when the range right after it is a hole or the top of the pool (no copy, its slots stay valid);
otherwise it moves to a free range with room for the tokens plus a slack of
`max(tokens // 8, min(tokens, unit))` (doubling while small) (one block copy of its stored K/V, no re-rotation: the
positions are segment-local) and its old range becomes a hole. `held` counts the slots of live
segments (their capacities), O(1).

Twin: the plain `KVStore` (tests/runtime/test_engine_kv.py checks identical contents and logits,
that a churn of allocations keeps the arena bounded, and that growth keeps every token).
"""

from __future__ import annotations

import bisect

import torch

from plait.runtime.config import ModelConfig
from plait.runtime.rope import Rope
from plait.runtime.segments import KVStore, Segment


def round_up(n: int, unit: int) -> int:
    return -(-n // unit) * unit


class KVPool(KVStore):
    """`KVStore` with a free list of released slot ranges (see the module docstring).

    Args:
        config, dtype, device, rope: as `KVStore`.
        slots: arena size allocated up front (the engine passes its KV budget, so the arena
            starts large enough for everything the budget admits).
        unit: growth unit in slots (capacities grow to multiples of it).
    """

    def __init__(
        self,
        config: ModelConfig,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        rope: Rope | None = None,
        slots: int = 1024,
        unit: int = 64,
    ) -> None:
        if unit < 1:
            raise ValueError(f"the growth unit must be >= 1 slot, got {unit}")
        super().__init__(config, dtype, device, rope, slots)
        self.holes: list[tuple[int, int]] = []  # (base, size) free ranges below `top`, by base
        self.unit = unit
        self.held = 0  # slots of live segments (sum of capacities)
        self.grown_in_place = 0  # growths without a copy
        self.relocated_tokens = 0  # tokens copied by relocating growths

    def _allocate(self, capacity: int) -> int:
        self.held += capacity
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

    # ------------------------------------------------------------------ growth

    def _room_after(self, seg: Segment) -> int:
        """Free slots right after the segment without moving it (unbounded at the top)."""
        end = seg.base + seg.capacity
        if end == self.top:
            return 1 << 62
        i = bisect.bisect_left(self.holes, (end, 0))
        if i < len(self.holes) and self.holes[i][0] == end:
            return self.holes[i][1]
        return 0

    def target(self, seg: Segment, need: int, most: int | None = None) -> int:
        """The capacity `grow(seg, need, most)` would give the segment (its current one if it
        already holds `need`): in place, `need` rounded up to the unit; moved, plus a slack."""
        if need <= seg.capacity:
            return seg.capacity
        cap = round_up(need, self.unit)
        if cap - seg.capacity > self._room_after(seg):  # moved: a slack, so moves are rare
            cap = need + max(need // 8, min(need, self.unit))
        return max(need, min(cap, most)) if most is not None else cap

    @torch.inference_mode()
    def grow(self, seg: Segment, need: int, most: int | None = None) -> None:
        """Make room for `need` tokens in `seg` (see the module docstring); `most` caps the
        capacity (a sequence that never holds more)."""
        seg.check_live()
        cap = self.target(seg, need, most)
        extra = cap - seg.capacity
        if extra <= 0:
            return
        if extra <= self._room_after(seg):
            self._extend(seg, extra)
            return
        old, old_cap, n = seg.base, seg.capacity, seg.length
        base = self._allocate(cap)  # may grow the arena and rebind seg
        self.k[:, :, base : base + n] = self.k[:, :, old : old + n]
        self.v[:, :, base : base + n] = self.v[:, :, old : old + n]
        self._bind(seg, base, cap)
        self.stats.regrowths += 1
        self.relocated_tokens += n
        self.layout += 1
        self._release(old, old_cap)

    def _extend(self, seg: Segment, extra: int) -> None:
        end = seg.base + seg.capacity
        if end == self.top:
            KVStore._allocate(self, extra)  # bumps the top (grows the arena when full)
        else:
            i = bisect.bisect_left(self.holes, (end, 0))
            base, size = self.holes[i]
            if size == extra:
                del self.holes[i]
            else:
                self.holes[i] = (base + extra, size - extra)
        self.held += extra
        self._bind(seg, seg.base, seg.capacity + extra)
        self.grown_in_place += 1

    def reserve(self, seg: Segment, extra: int) -> None:
        self.grow(seg, seg.length + extra)

    def _release(self, base: int, size: int) -> None:
        """Return [base, base+size) to the free list, merging with adjacent holes; holes at or
        above the top (recomputed by `KVStore.free`) are dropped: the bump pointer covers them."""
        self.held -= size
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
        return self.held
