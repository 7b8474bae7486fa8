"""Shared KV segments: append-only runs of tokens that several streams read in different orders.

A `Segment` holds, for every layer, K and V of its tokens with keys RoPE-rotated at
segment-local positions 0..len-1. All segments of a store live in one preallocated arena per
K and V, shape (L, Hkv, slots, D); a segment is a contiguous range of slots (its capacity), and
`Segment.k`/`.v` are views of its range. Appending writes into the free tail and never copies
stored tokens, and one step writes every stream's new K/V with a single indexed copy per layer.
Exceeding a segment's capacity moves it once to a range twice as large (amortised O(1); counted in
`KVStore.stats.regrowths`, so tests and benchmarks can assert that a correctly sized segment never
moves); a full arena grows by doubling (`stats.arena_growths`).

Every use of a freed segment (read, write, free again) raises ValueError; writes are bounds-
checked (start <= length, end <= capacity): nothing is dropped or aliased silently. A step asks
the store for its writes' arena slots (`arena_slots`, checked once per step), writes them per
layer (`write_slots`, which refuses slots made before a segment moved or was freed) and then
advances the segments (`advance`).

`KVStore.copy_range(src, start, n, dst)` appends src's tokens start.. to dst with one relative
rotation of their keys (to their new positions); `move(src, dst)` copies all of src and empties it.

Every method that writes the arena runs under `torch.inference_mode()`: the arena may be
(re)allocated inside `Runner.step` and later written from plain code (a Hogwild step merge).
Arguments are checked at entry (`plait.runtime.checks`): a segment of another store is refused.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from plait.runtime.checks import check_entry, count
from plait.runtime.config import ModelConfig
from plait.runtime.rope import Rope, apply_rotary

_ids = itertools.count(1)  # segment ids and store uids


@dataclass(slots=True)
class StoreStats:
    """Counters for what the store did (for tests and benchmarks)."""

    regrowths: int = 0  # reallocations caused by exceeding a segment's capacity
    moved_tokens: int = 0  # tokens moved between segments by `move`
    arena_growths: int = 0  # reallocations of the whole arena (all slots in use)


@dataclass(frozen=True, slots=True)
class ArenaSlots:
    """Arena slots (T,) of one step's writes, made and checked by `KVStore.arena_slots`."""

    index: torch.Tensor  # (T,) int64
    layout: int  # the store's layout counter when made (later moves make them stale)


@dataclass(eq=False)
class Segment:
    """An append-only run of tokens with per-layer K/V storage.

    `k` and `v` have shape (L, Hkv, capacity, D); only the first `length` slots are valid.
    """

    name: str
    k: torch.Tensor  # view of the store's arena: (L, Hkv, capacity, D)
    v: torch.Tensor
    base: int = 0  # first arena slot of this segment
    length: int = 0
    tokens: list[int] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_ids))
    freed: bool = False  # set by `KVStore.free`: any further use raises
    owner: int = 0  # the `KVStore.uid` of the store that made it (a store refuses others')

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def check_live(self) -> None:
        """ValueError if the segment was freed."""
        if self.freed:
            raise ValueError(
                f"segment {self.name!r} was freed; allocate a new one with store.new_segment()"
            )

    def keys(self, layer: int, upto: int | None = None) -> torch.Tensor:
        """Stored keys of one layer, (Hkv, n, D), a view (no copy)."""
        self.check_live()
        return self.k[layer, :, : self.length if upto is None else upto]

    def values(self, layer: int, upto: int | None = None) -> torch.Tensor:
        self.check_live()
        return self.v[layer, :, : self.length if upto is None else upto]

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, len={self.length}, cap={self.capacity})"


class KVStore:
    """Owns all segments of one model (same dtype and device) in one K and one V arena.

    Args:
        config: the model's config (layers, KV heads, head dim).
        dtype, device: storage dtype and device (the model's).
        rope: the model's `Rope` (for relative shifts in `move`).
        slots: initial arena size in tokens; it doubles when full.
    """

    def __init__(
        self,
        config: ModelConfig,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        rope: Rope | None = None,
        slots: int = 1024,
    ) -> None:
        self.config, self.dtype, self.device = config, dtype, torch.device(device)
        self.rope = rope or Rope(config.rope, config.head_dim)
        self.segments: list[Segment] = []
        self.stats = StoreStats()
        self.k = torch.zeros(self._shape(max(slots, 1)), dtype=dtype, device=self.device)
        self.v = torch.zeros_like(self.k)
        self.top = 0  # first unallocated slot (bump allocator)
        self.layout = 0  # bumped whenever a segment moves, shrinks or is freed (stale slots)
        self.uid = next(_ids)  # stamped on its segments (checks.check_entry)

    def _shape(self, slots: int) -> tuple[int, int, int, int]:
        c = self.config
        return (c.num_layers, c.num_kv_heads, slots, c.head_dim)

    @torch.inference_mode()
    def _allocate(self, capacity: int) -> int:
        if self.top + capacity > self.k.shape[2]:
            size = max(2 * self.k.shape[2], self.top + capacity)
            k = torch.zeros(self._shape(size), dtype=self.dtype, device=self.device)
            v = torch.zeros_like(k)
            k[:, :, : self.top] = self.k[:, :, : self.top]
            v[:, :, : self.top] = self.v[:, :, : self.top]
            self.k, self.v = k, v
            for seg in self.segments:
                self._bind(seg, seg.base, seg.capacity)
            self.stats.arena_growths += 1
        base, self.top = self.top, self.top + capacity
        return base

    def _bind(self, seg: Segment, base: int, capacity: int) -> None:
        seg.base = base
        seg.k = self.k[:, :, base : base + capacity]
        seg.v = self.v[:, :, base : base + capacity]

    @torch.inference_mode()
    def new_segment(self, capacity: int = 256, name: str = "") -> Segment:
        """Allocate an empty segment with room for `capacity` tokens."""
        if count("capacity", capacity) < 1:
            raise ValueError(f"segment capacity must be >= 1, got {capacity}")
        base = self._allocate(capacity)
        seg = Segment(name=name or f"seg{len(self.segments)}", k=self.k[:, :, :0],
                      v=self.v[:, :, :0], owner=self.uid)  # fmt: skip
        self._bind(seg, base, capacity)
        self.segments.append(seg)
        return seg

    def free(self, seg: Segment) -> None:
        """Drop a segment (it must no longer be in any view). Free space above the highest live
        segment is reused, whatever order segments are freed in: repeated solves do not grow it."""
        check_entry(self.uid, {"segment": seg})
        self.segments = [s for s in self.segments if s is not seg]
        self.top = max((s.base + s.capacity for s in self.segments), default=0)
        seg.k, seg.v = seg.k[:, :, :0], seg.v[:, :, :0]
        seg.length, seg.tokens, seg.freed = 0, [], True
        self.layout += 1

    def nbytes(self) -> int:
        """Bytes of K/V storage reserved by live segments (their capacities)."""
        return sum(s.k.nbytes + s.v.nbytes for s in self.segments)

    def arena_bytes(self) -> int:
        """Bytes allocated for the arena (reserved or not)."""
        return self.k.nbytes + self.v.nbytes

    def used_bytes(self) -> int:
        """Bytes of K/V storage occupied by stored tokens."""
        per_token = 2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim
        return sum(s.length for s in self.segments) * per_token * self.dtype.itemsize

    @torch.inference_mode()
    def reserve(self, seg: Segment, extra: int) -> None:
        """Ensure room for `extra` more tokens (moves the segment to a doubled range if needed)."""
        check_entry(self.uid, {"segment": seg}, extra=extra)
        need = seg.length + extra
        if need <= seg.capacity:
            return
        cap = max(need, 2 * seg.capacity)
        base = self._allocate(cap)  # may grow the arena and rebind seg
        old, n = seg.base, seg.length
        self.k[:, :, base : base + n] = self.k[:, :, old : old + n]
        self.v[:, :, base : base + n] = self.v[:, :, old : old + n]
        self._bind(seg, base, cap)
        self.stats.regrowths += 1
        self.layout += 1

    @torch.inference_mode()
    def write(self, seg: Segment, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store rotated keys k and values v, each (Hkv, n, D), at slots start..start+n-1:
        over or right after the stored tokens (start <= length), within the capacity."""
        n = k.shape[1]
        self._check_write(seg, start, n)
        seg.k[layer, :, start : start + n] = k
        seg.v[layer, :, start : start + n] = v

    def _check_write(self, seg: Segment, start: int, n: int) -> None:
        check_entry(self.uid, {"segment": seg}, start=start, n=n)
        if not 0 <= start <= seg.length:
            raise ValueError(
                f"cannot write at slot {start} of {seg.name!r}: it holds {seg.length} tokens "
                "(write over them or right after them)"
            )
        if start + n > seg.capacity:
            raise ValueError(
                f"cannot write {n} tokens at slot {start} of {seg.name!r}: capacity "
                f"{seg.capacity}; call store.reserve(segment, n) first"
            )

    def arena_slots(self, writes: list[tuple[Segment, int, int]]) -> ArenaSlots:
        """The arena slots of a step's writes, (segment, first slot, tokens) each, checked as
        `write` checks them; valid until a segment moves, shrinks or is freed."""
        index: list[int] = []
        for seg, start, n in writes:
            self._check_write(seg, start, n)
            index.extend(range(seg.base + start, seg.base + start + n))
        return ArenaSlots(torch.tensor(index, device=self.device), self.layout)

    def slot_index(self, slots: ArenaSlots) -> torch.Tensor:
        """The (T,) arena slots of `slots`; ValueError if they are stale."""
        if slots.layout != self.layout:
            raise ValueError(
                "arena slots are stale: a segment moved, shrank or was freed since they were "
                "made; make them again with store.arena_slots()"
            )
        return slots.index

    @torch.inference_mode()
    def write_slots(self, layer: int, slots: ArenaSlots, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store rows of k and v, each (T, Hkv, D), at checked arena slots in one copy each."""
        index = self.slot_index(slots)
        if not k.shape[0] == v.shape[0] == index.shape[0]:
            raise ValueError(
                f"write_slots: {index.shape[0]} slots for {k.shape[0]} keys and {v.shape[0]} values"
            )
        self.k[layer].index_copy_(1, index, k.transpose(0, 1))
        self.v[layer].index_copy_(1, index, v.transpose(0, 1))

    def advance(self, seg: Segment, tokens: list[int]) -> None:
        """Count `tokens`, whose K/V a step wrote at slots length.., as stored in `seg`."""
        check_entry(self.uid, {"segment": seg})
        if seg.length + len(tokens) > seg.capacity:
            raise ValueError(
                f"cannot advance {seg.name!r} by {len(tokens)} tokens: {seg.length} of "
                f"{seg.capacity} slots used"
            )
        seg.length += len(tokens)
        seg.tokens.extend(tokens)

    def truncate(self, seg: Segment, n: int) -> None:
        """Keep only the first n tokens of a segment (drop a diverging tail); O(1), no copy."""
        check_entry(self.uid, {"segment": seg}, n=n)
        if not 0 <= n <= seg.length:
            raise ValueError(f"cannot truncate {seg.name!r} of length {seg.length} to {n} tokens")
        seg.length = n
        del seg.tokens[n:]
        self.layout += 1

    @torch.inference_mode()
    def copy_range(self, src: Segment, start: int, n: int, dst: Segment) -> None:
        """Append src's tokens start..start+n-1 to dst, src unchanged: src's slot j becomes dst's
        slot dst.length + j - start (keys rotated by that shift, in float32)."""
        check_entry(self.uid, {"src": src, "dst": dst}, start=start, n=n)
        if not 0 <= start <= start + n <= src.length:
            raise ValueError(f"cannot copy {start}..{start + n} of {src.name!r} ({src.length})")
        if n == 0:
            return
        self.reserve(dst, n)
        delta = torch.full((1,), dst.length - start, device=self.device)
        cos, sin = self.rope.shift_cos_sin(delta, torch.float32)  # (1, R)
        k = src.k[:, :, start : start + n].float()  # (L, Hkv, n, D)
        dst.k[:, :, dst.length : dst.length + n] = apply_rotary(k, cos, sin).to(self.dtype)
        dst.v[:, :, dst.length : dst.length + n] = src.v[:, :, start : start + n]
        dst.length += n
        dst.tokens.extend(src.tokens[start : start + n])

    def move(self, src: Segment, dst: Segment) -> None:
        """Append all of src's tokens to dst (`copy_range`), then empty src."""
        if src is dst:
            raise ValueError("cannot move a segment into itself")
        n = src.length
        self.copy_range(src, 0, n, dst)
        if n:
            src.length, src.tokens = 0, []
            self.stats.moved_tokens += n
            self.layout += 1
