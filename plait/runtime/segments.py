"""Shared KV segments: append-only runs of tokens that several streams read in different orders.

A `Segment` holds, for every layer, K and V of its tokens with keys RoPE-rotated at
segment-local positions 0..len-1. Storage is preallocated with a capacity; appending writes into
the free tail and never copies stored tokens. Exceeding the capacity reallocates once with
doubling (amortised O(1); counted in `KVStore.stats.regrowths` so tests and benchmarks can assert
that a correctly sized segment never moves).

`KVStore.move(src, dst)` appends src's tokens to dst with one relative rotation of the moved keys
(positions shift by dst's length) and empties src: O(len(src)), never a copy of dst.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from plait.runtime.config import ModelConfig
from plait.runtime.rope import Rope, apply_rotary

_ids = itertools.count()


@dataclass(slots=True)
class StoreStats:
    """Counters for what the store did (for tests and benchmarks)."""

    regrowths: int = 0  # reallocations caused by exceeding a segment's capacity
    moved_tokens: int = 0  # tokens moved between segments by `move`


@dataclass(eq=False)
class Segment:
    """An append-only run of tokens with per-layer K/V storage.

    `k` and `v` have shape (L, Hkv, capacity, D); only the first `length` slots are valid.
    """

    name: str
    k: torch.Tensor
    v: torch.Tensor
    length: int = 0
    tokens: list[int] = field(default_factory=list)
    id: int = field(default_factory=lambda: next(_ids))

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def keys(self, layer: int, upto: int | None = None) -> torch.Tensor:
        """Stored keys of one layer, (Hkv, n, D), a view (no copy)."""
        return self.k[layer, :, : self.length if upto is None else upto]

    def values(self, layer: int, upto: int | None = None) -> torch.Tensor:
        return self.v[layer, :, : self.length if upto is None else upto]

    def __repr__(self) -> str:
        return f"Segment({self.name!r}, len={self.length}, cap={self.capacity})"


class KVStore:
    """Owns all segments of one model (same dtype and device)."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", rope: Rope | None = None) -> None:
        self.config = config
        self.dtype = dtype
        self.device = torch.device(device)
        self.rope = rope or Rope(config.rope, config.head_dim)
        self.segments: list[Segment] = []
        self.stats = StoreStats()

    def new_segment(self, capacity: int = 256, name: str = "") -> Segment:
        """Allocate an empty segment with room for `capacity` tokens."""
        if capacity < 1:
            raise ValueError(f"segment capacity must be >= 1, got {capacity}")
        shape = self._shape(capacity)
        seg = Segment(name=name or f"seg{len(self.segments)}",
                      k=torch.zeros(shape, dtype=self.dtype, device=self.device),
                      v=torch.zeros(shape, dtype=self.dtype, device=self.device))
        self.segments.append(seg)
        return seg

    def free(self, seg: Segment) -> None:
        """Release a segment's storage (it must no longer be in any view)."""
        self.segments = [s for s in self.segments if s is not seg]
        seg.k = seg.k[:, :, :0]
        seg.v = seg.v[:, :, :0]
        seg.length, seg.tokens = 0, []

    def nbytes(self) -> int:
        """Bytes of K/V storage held by all live segments (allocated capacity)."""
        return sum(s.k.nbytes + s.v.nbytes for s in self.segments)

    def used_bytes(self) -> int:
        """Bytes of K/V storage occupied by stored tokens."""
        per_token = 2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim
        return sum(s.length for s in self.segments) * per_token * self.dtype.itemsize

    def _shape(self, capacity: int) -> tuple[int, int, int, int]:
        c = self.config
        return (c.num_layers, c.num_kv_heads, capacity, c.head_dim)

    def reserve(self, seg: Segment, extra: int) -> None:
        """Ensure room for `extra` more tokens (reallocates with doubling if needed)."""
        need = seg.length + extra
        if need <= seg.capacity:
            return
        cap = max(need, 2 * seg.capacity)
        k = torch.zeros(self._shape(cap), dtype=self.dtype, device=self.device)
        v = torch.zeros_like(k)
        k[:, :, : seg.length] = seg.k[:, :, : seg.length]
        v[:, :, : seg.length] = seg.v[:, :, : seg.length]
        seg.k, seg.v = k, v
        self.stats.regrowths += 1

    def write(self, seg: Segment, layer: int, start: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store rotated keys k and values v, each (Hkv, n, D), at slots start..start+n-1."""
        n = k.shape[1]
        seg.k[layer, :, start : start + n] = k
        seg.v[layer, :, start : start + n] = v

    def move(self, src: Segment, dst: Segment) -> None:
        """Append all of src's tokens to dst (one rotation of the moved keys), then empty src."""
        if src is dst:
            raise ValueError("cannot move a segment into itself")
        n = src.length
        if n == 0:
            return
        self.reserve(dst, n)
        delta = torch.full((1,), dst.length, device=self.device)
        cos, sin = self.rope.shift_cos_sin(delta, torch.float32)  # (1, R)
        k = src.k[:, :, :n].float()  # (L, Hkv, n, D)
        k = apply_rotary(k, cos, sin).to(self.dtype)
        dst.k[:, :, dst.length : dst.length + n] = k
        dst.v[:, :, dst.length : dst.length + n] = src.v[:, :, :n]
        dst.length += n
        dst.tokens.extend(src.tokens)
        src.length, src.tokens = 0, []
        self.stats.moved_tokens += n
