"""The tile layout: 16 output rows of a packed matrix interleaved for the int8 tile kernel.

`kernels/quant_tiles.cpp` computes 16 outputs at once with one vector lane per output row, so it
reads weights "lane-major": per 64-element chunk, the 16 rows' fp16 block scales, then vectors
whose lane o holds row o's 4 quants at k = 4g..4g+3 (Q8_0: the int8 quants + 128 as unsigned
bytes; Q5_0: their low 4 bits two vectors to a byte, then the fifth bits, 8 vectors to a byte).
The bytes equal the packed row layout's (`formats`), so tiling changes no memory use; packed
matrices are tiled when they load for the int8 path and `untile` restores the row layout (the
twin: `formats.unpack(untile(t))` decodes a tiled matrix). Rows must come in whole tiles of 16.
"""

from __future__ import annotations

import numpy as np

from plait.runtime.quant import formats

LANES = 16
"""Output rows per tile."""
TILE_TYPES = ("Q8_0", "Q5_0")
"""Types with a tile layout (and kernel)."""
TILE_CODE = 16
"""A tile layout's kernel type code is TILE_CODE + the type's packed code."""


def tileable(qtype: str, rows: int) -> bool:
    """Whether an (rows, K) packed matrix of `qtype` has a tile layout."""
    return qtype in TILE_TYPES and rows % LANES == 0 and rows > 0


def _values(packed: np.ndarray, qtype: str, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Row layout (O, C x chunk) -> (fp16 scale bytes (O, C, 4), unsigned quants (O, C, 64))."""
    p = packed.reshape(packed.shape[0], c, -1)
    d = p[..., 0:4]
    if qtype == "Q8_0":
        return d, p[..., 4:] ^ np.uint8(0x80)
    bits = np.unpackbits(p[..., 4:12], axis=-1, bitorder="little")  # (O, C, 64)
    nib = p[..., 12:]
    q = np.concatenate([nib & 15, nib >> 4], axis=-1) | (bits << 4)
    return d, q


def tile(packed: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """Packed row layout (O, row bytes) -> tile layout (O / 16, 16 x row bytes)."""
    o, c = packed.shape[0], formats.chunks(k)
    if not tileable(qtype, o) or packed.shape[1] != formats.row_bytes(qtype, k):
        raise ValueError(f"no tile layout for a {qtype} matrix of {o} rows x {k}")
    d, q = _values(packed, qtype, c)
    t = o // LANES
    # scales: (T, 16, C, blk, 2 bytes) -> (T, C, blk, 16, 2)
    sc = d.reshape(t, LANES, c, 2, 2).transpose(0, 2, 3, 1, 4).reshape(t, c, 64)
    # quants: (T, 16, C, g, 4) -> V (T, C, g, 16 x 4)
    v = q.reshape(t, LANES, c, 16, 4).transpose(0, 2, 3, 1, 4).reshape(t, c, 16, 64)
    if qtype == "Q8_0":
        body = v.reshape(t, c, 1024)
    else:
        nib = (v[:, :, :8] & 15) | ((v[:, :, 8:] & 15) << 4)  # (T, C, 8, 64)
        hb = ((v >> 4) & 1).reshape(t, c, 2, 8, 64)
        h = (hb << np.arange(8, dtype=np.uint8)[:, None]).sum(axis=3, dtype=np.uint8)
        body = np.concatenate([nib.reshape(t, c, 512), h.reshape(t, c, 128)], axis=-1)
    return np.ascontiguousarray(np.concatenate([sc, body], axis=-1).reshape(t, -1))


def untile(tiled: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """Tile layout (O / 16, 16 x row bytes) -> packed row layout (O, row bytes): tile's inverse."""
    t, c = tiled.shape[0], formats.chunks(k)
    p = tiled.reshape(t, c, -1)
    d = p[..., :64].reshape(t, c, 2, LANES, 2).transpose(0, 3, 1, 2, 4).reshape(t * LANES, c, 4)
    if qtype == "Q8_0":
        v = p[..., 64:].reshape(t, c, 16, 64)
    else:
        nib = p[..., 64:576].reshape(t, c, 8, 64)
        h = p[..., 576:].reshape(t, c, 2, 1, 64)
        hb = (h >> np.arange(8, dtype=np.uint8)[:, None]) & 1  # (T, C, 2, 8, 64)
        lo = np.concatenate([nib & 15, nib >> 4], axis=2)  # (T, C, 16, 64)
        v = lo | (hb.reshape(t, c, 16, 64) << 4)
    q = v.reshape(t, c, 16, LANES, 4).transpose(0, 3, 1, 2, 4).reshape(t * LANES, c, 64)
    if qtype == "Q8_0":
        body = q ^ np.uint8(0x80)
    else:
        bits = np.packbits((q >> 4) & 1, axis=-1, bitorder="little")  # (O, C, 8)
        lo = q & 15
        body = np.concatenate([bits, lo[..., :32] | (lo[..., 32:] << 4)], axis=-1)
    return np.ascontiguousarray(np.concatenate([d, body], axis=-1).reshape(t * LANES, -1))
