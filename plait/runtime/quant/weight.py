"""Weights kept in packed GGUF blocks: a linear layer and an embedding table that compute on them.

`PackedWeight` is one (O, K) matrix as one or more row segments of packed blocks
(`formats.pack`), each of its own GGUF type: plait fuses q/k/v and gate/up into one matrix,
and a GGUF may quantise them differently (the 0.5B: q, k in Q5_0, v in Q8_0 in half the
layers). It computes in bf16: `matmul` is the compiled kernel (`kernels.quant.quant_linear`)
where it runs, and `dense()` @ x (the twin) elsewhere; `rows` dequantises embedding rows.
`QuantLinear` / `QuantEmbedding` are the modules that hold one in a `DecoderLM`; their
`weight` is the PackedWeight, which `plait.runtime.model.linear` routes here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from plait.runtime.kernels import quant as qkernels
from plait.runtime.quant import formats, tiles

QMETA = ".qmeta"  # suffix of a packed tensor's int64 record [type code, rows, K] in the cache
QPACK = ".qpack"  # suffix of its uint8 bytes (rows, row bytes)
_NAMES = formats.NAMES


class PackedWeight:
    """An (O, K) weight as packed row segments; computes in bf16 on the CPU."""

    dtype = torch.bfloat16  # the compute dtype (what DecoderLM.dtype reports)
    device = torch.device("cpu")

    def __init__(
        self, packs: Sequence[torch.Tensor], types: Sequence[int], k: int, int8: bool = True
    ) -> None:
        if not packs or len(packs) != len(types):
            raise ValueError("a PackedWeight needs one type code per packed segment")
        for p, t in zip(packs, types):
            if t not in _NAMES:
                raise ValueError(f"unknown packed type code {t}; known: {sorted(_NAMES)}")
            if (
                p.dtype != torch.uint8
                or p.dim() != 2
                or p.shape[1] != formats.row_bytes(_NAMES[t], k)
            ):
                raise ValueError(
                    f"packed {_NAMES[t]} segment must be uint8 (rows, "
                    f"{formats.row_bytes(_NAMES[t], k)}), got {p.dtype} {tuple(p.shape)}"
                )
        self.packs = [p.contiguous() for p in packs]
        self.types = [int(t) for t in types]
        self.k = int(k)
        self.shape = (sum(p.shape[0] for p in self.packs), self.k)
        self.int8 = int8  # activations quantised to int8 per row and block (else exact bf16)
        # the kernel's type code per segment: the type's, + tiles.TILE_CODE where it is tiled
        self.kernel_types = list(self.types)

    def set_int8(self, int8: bool) -> None:
        """Choose int8 (True) or exact bf16 activations; the int8 kernel reads the segments that
        have a tile layout tiled (tiles.py), the exact kernel the row layout."""
        self.int8 = int8
        want = int8 and qkernels.available()
        tiled = self.tiled
        for i, (p, t) in enumerate(zip(self.packs, self.types)):
            if want and not tiled[i] and tiles.tileable(_NAMES[t], p.shape[0]):
                self.packs[i] = qkernels.tile_pack(p, t, self.k)  # == tiles.tile, compiled
                self.kernel_types[i] = t + tiles.TILE_CODE
            elif not want and tiled[i]:
                self.packs[i] = self.row_pack(i)
                self.kernel_types[i] = t

    @property
    def tiled(self) -> list[bool]:
        """Which segments are in the tile layout (tiles.py)."""
        return [c >= tiles.TILE_CODE for c in self.kernel_types]

    def row_pack(self, i: int) -> torch.Tensor:
        """Segment i in the row layout (untiled if need be)."""
        if self.kernel_types[i] < tiles.TILE_CODE:
            return self.packs[i]
        return torch.from_numpy(tiles.untile(self.packs[i].numpy(), _NAMES[self.types[i]], self.k))

    @property
    def type_names(self) -> list[str]:
        return [_NAMES[t] for t in self.types]

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (what a decode step reads)."""
        return sum(p.numel() for p in self.packs)

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The whole matrix dequantised (O, K) with the numpy decoder (the reference twin)."""
        parts = [
            torch.from_numpy(formats.unpack(self.row_pack(i).numpy(), _NAMES[t], self.k))
            for i, t in enumerate(self.types)
        ]
        return torch.cat(parts).to(dtype)

    def matmul(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """x (..., K) -> (..., O) in bf16: the kernel where it runs (int8 or exact activations,
        `self.int8`), else (no kernel, or autograd) dense() and F.linear on the bf16 x."""
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.k).to(torch.bfloat16)  # (R, K)
        if qkernels.available() and not torch.is_grad_enabled():
            b = None if bias is None else bias.to(torch.float32).contiguous()
            y = qkernels.quant_linear(x2, self.packs, self.kernel_types, self.k, b, self.int8)
        else:
            w = self.dense(torch.bfloat16).float()  # (O, K) the bf16 weights, fp32 math
            y = F.linear(x2.float(), w, None if bias is None else bias.float()).to(torch.bfloat16)
        return y.reshape(*lead, self.shape[0])

    def rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` (any shape) dequantised to bf16, shape ids.shape + (K,)."""
        if len(self.packs) != 1 or self.tiled[0]:
            raise ValueError("row lookups need a single-segment weight in the row layout")
        flat = ids.reshape(-1).to(torch.int64)
        if qkernels.available():
            out = qkernels.quant_rows(self.packs[0], self.types[0], self.k, flat)
        else:
            block = self.packs[0].numpy()[flat.numpy()]
            out = torch.from_numpy(formats.unpack(block, _NAMES[self.types[0]], self.k))
        return out.to(torch.bfloat16).reshape(*ids.shape, self.k)


def pack_tensor(raw: np.ndarray, qtype: str, k: int) -> torch.Tensor:
    """GGUF block bytes of an (O, k) matrix -> packed uint8 tensor (O, row bytes)."""
    return torch.from_numpy(np.ascontiguousarray(formats.pack(raw, qtype, k)))


def from_state(sd: dict[str, torch.Tensor], name: str) -> PackedWeight | None:
    """The PackedWeight stored under `name` in a cache state dict (None if not packed)."""
    meta = sd.get(name + QMETA)
    if meta is None:
        return None
    code, _rows, k = (int(v) for v in meta.tolist())
    return PackedWeight([sd[name + QPACK]], [code], k)


def concat(parts: Sequence[PackedWeight]) -> PackedWeight:
    """Row-wise concatenation (a fused projection), keeping each part's type."""
    if any(any(p.tiled) for p in parts):
        raise ValueError("fuse weights before tiling them (set_int8)")
    ks = {p.k for p in parts}
    if len(ks) != 1:
        raise ValueError(f"fused weights must share K, got {sorted(ks)}")
    packs = [t for p in parts for t in p.packs]
    types = [t for p in parts for t in p.types]
    # merge neighbours of the same type into one segment (one kernel pass instead of several)
    merged_p: list[torch.Tensor] = []
    merged_t: list[int] = []
    for p, t in zip(packs, types):
        if merged_t and merged_t[-1] == t:
            merged_p[-1] = torch.cat([merged_p[-1], p])
        else:
            merged_p.append(p)
            merged_t.append(t)
    modes = {p.int8 for p in parts}
    if len(modes) != 1:
        raise ValueError("fused weights must share their activation mode (int8 or exact)")
    return PackedWeight(merged_p, merged_t, ks.pop(), modes.pop())


class QuantLinear(nn.Module):
    """A linear layer on a PackedWeight; `bias` (fp32) is a buffer."""

    def __init__(self, weight: PackedWeight, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer(
            "bias", None if bias is None else bias.float().contiguous(), persistent=False
        )
        self._register_packs()

    def _register_packs(self) -> None:
        for i, p in enumerate(self.weight.packs):
            self.register_buffer(f"pack{i}", p, persistent=False)

    def set_int8(self, int8: bool) -> None:
        """PackedWeight.set_int8, keeping the module's buffers on the weight's (re)laid packs."""
        self.weight.set_int8(int8)
        self._register_packs()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.matmul(x, cast("torch.Tensor | None", self.bias))


class QuantEmbedding(nn.Module):
    """An embedding table on a PackedWeight (rows dequantised on lookup, bf16)."""

    def __init__(self, weight: PackedWeight) -> None:
        super().__init__()
        self.weight = weight
        self.register_buffer("pack0", weight.packs[0], persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight.rows(ids)
