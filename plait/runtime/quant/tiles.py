"""The tile layout: 16 output rows of a packed matrix interleaved for the int8 tile kernel.

`kernels/quant_tiles.cpp` computes 16 outputs at once with one vector lane per output row, so it
reads weights "lane-major": per 64-element chunk, the 16 rows' fp16 block scales, then vectors
whose lane o holds row o's 4 quants at k = 4g..4g+3 (Q8_0: the int8 quants + 128 as unsigned
bytes; Q5_0: their low 4 bits two vectors to a byte, then the fifth bits, 8 vectors to a byte).
The bytes equal the packed row layout's (`formats`), so tiling changes no memory use; packed
matrices are tiled when they load for the int8 path (by `kernels.quant.tile_pack`, the compiled
twin of `tile`) and `untile` restores the row layout (`formats.unpack(untile(t))` decodes a
tiled matrix). Rows must come in whole tiles of 16.
"""

from __future__ import annotations

import numpy as np

from plait.runtime.quant import formats

LANES = 16
"""Output rows per tile."""
TILE_TYPES = ("Q8_0", "Q5_0", "Q4_K", "Q6_K")
"""Types with a tile layout (and kernel)."""
TILE_CODE = 16
"""A tile layout's kernel type code is TILE_CODE + the type's packed code."""


def _kq_values(packed: np.ndarray, qtype: str, s: int) -> tuple[np.ndarray, np.ndarray]:
    """K-quant row layout (O, S x superblock) -> (head bytes (O, S, h), unsigned quants
    (O, S, 256)): Q4_K's head d, dmin, 8 scales, 8 mins; Q6_K's d, 16 int8 scales."""
    p = packed.reshape(packed.shape[0], s, -1)
    if qtype == "Q4_K":
        nib = p[..., 20:].reshape(p.shape[0], s, 4, 32)
        return p[..., :20], np.concatenate([nib & 15, nib >> 4], axis=-1).reshape(-1, s, 256)
    ch = p[..., 18:].reshape(p.shape[0], s, 4, 48)
    top = (ch[..., None, :16] >> (2 * np.arange(4, dtype=np.uint8))[:, None]) & 3  # (.., 4, 16)
    nib = ch[..., 16:]
    q = np.concatenate([nib & 15, nib >> 4], axis=-1) | (top.reshape(-1, s, 4, 64) << 4)
    return p[..., :18], q.reshape(-1, s, 256)


def _kq_tile(packed: np.ndarray, qtype: str, o: int, s: int) -> np.ndarray:
    """K-quant tiles, per superblock: Q4_K d (16 fp16), dmin, scales [j][o], mins [j/2][o][2],
    then per 64-element chunk p 8 nibble vectors N[g] (low = V[16p + g], high = V[16p + 8 + g]);
    Q6_K d, scales [j/2][o][2] (int8), then per chunk N as Q4_K's and 4 vectors whose bits
    2b..2b+1 hold the top bits of V[16p + 4i + b]."""
    head, q = _kq_values(packed, qtype, s)
    t = o // LANES
    h = head.reshape(t, LANES, s, -1).transpose(0, 2, 1, 3)  # (T, S, 16, head)
    v = q.reshape(t, LANES, s, 64, 4).transpose(0, 2, 3, 1, 4).reshape(t, s, 4, 16, 64)
    nib = (v[:, :, :, :8] & 15) | ((v[:, :, :, 8:] & 15) << 4)  # (T, S, 4, 8, 64)
    if qtype == "Q4_K":
        parts = [
            h[..., 0:2].reshape(t, s, 32),
            h[..., 2:4].reshape(t, s, 32),
            h[..., 4:12].transpose(0, 1, 3, 2).reshape(t, s, 128),
            h[..., 12:20].reshape(t, s, LANES, 4, 2).transpose(0, 1, 3, 2, 4).reshape(t, s, 128),
            nib.reshape(t, s, 2048),
        ]
    else:
        top = (v >> 4).reshape(t, s, 4, 4, 4, 64)  # (T, S, p, i, b, 64)
        tb = (top << (2 * np.arange(4, dtype=np.uint8))[:, None]).sum(axis=4, dtype=np.uint8)
        body = np.concatenate([nib.reshape(t, s, 4, 512), tb.reshape(t, s, 4, 256)], axis=-1)
        parts = [
            h[..., 0:2].reshape(t, s, 32),
            h[..., 2:18].reshape(t, s, LANES, 8, 2).transpose(0, 1, 3, 2, 4).reshape(t, s, 256),
            body.reshape(t, s, 3072),
        ]
    return np.concatenate(parts, axis=-1).reshape(t, -1)


def _kq_untile(tiled: np.ndarray, qtype: str, s: int) -> np.ndarray:
    """_kq_tile's inverse: tiles -> the K-quant row layout (O, S x superblock)."""
    t = tiled.shape[0]
    p = tiled.reshape(t, s, -1)
    if qtype == "Q4_K":
        d = p[..., 0:32].reshape(t, s, LANES, 2)
        dmin = p[..., 32:64].reshape(t, s, LANES, 2)
        sc = p[..., 64:192].reshape(t, s, 8, LANES).transpose(0, 1, 3, 2)
        mn = p[..., 192:320].reshape(t, s, 4, LANES, 2).transpose(0, 1, 3, 2, 4)
        head = np.concatenate([d, dmin, sc, mn.reshape(t, s, LANES, 8)], axis=-1)
        nib = p[..., 320:].reshape(t, s, 4, 8, 64)
    else:
        d = p[..., 0:32].reshape(t, s, LANES, 2)
        sc = p[..., 32:288].reshape(t, s, 8, LANES, 2).transpose(0, 1, 3, 2, 4)
        head = np.concatenate([d, sc.reshape(t, s, LANES, 16)], axis=-1)
        tail = p[..., 288:].reshape(t, s, 4, 768)
        nib = tail[..., :512].reshape(t, s, 4, 8, 64)
        tb = tail[..., 512:].reshape(t, s, 4, 4, 1, 64)
        top = (tb >> (2 * np.arange(4, dtype=np.uint8))[:, None]) & 3  # (T, S, p, i, b, 64)
    v = np.concatenate([nib & 15, nib >> 4], axis=3)  # (T, S, 4, 16, 64)
    if qtype == "Q6_K":
        v = v | (top.reshape(t, s, 4, 16, 64) << 4)
    q = v.reshape(t, s, 64, LANES, 4).transpose(0, 3, 1, 2, 4).reshape(t * LANES, s, 256)
    head = head.transpose(0, 2, 1, 3).reshape(t * LANES, s, -1)
    body: np.ndarray  # (O, S, superblock bytes after the head)
    if qtype == "Q4_K":
        qc = q.reshape(-1, s, 4, 64)
        body = (qc[..., :32] | (qc[..., 32:] << 4)).reshape(-1, s, 128)
    else:
        qc = q.reshape(-1, s, 4, 4, 16)  # (O, S, chunk, k, j)
        top = ((qc >> 4) << (2 * np.arange(4, dtype=np.uint8))[:, None]).sum(
            axis=-2, dtype=np.uint8
        )
        lo = (qc & 15).reshape(-1, s, 4, 64)
        nibs = lo[..., :32] | (lo[..., 32:] << 4)
        body = np.concatenate([top, nibs], axis=-1).reshape(-1, s, 192)
    return np.concatenate([head, body], axis=-1).reshape(t * LANES, -1)


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
    if qtype in formats.SUPER_TYPES:
        return np.ascontiguousarray(_kq_tile(packed, qtype, o, c // 4))
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
    if qtype in formats.SUPER_TYPES:
        return np.ascontiguousarray(_kq_untile(tiled, qtype, c // 4))
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
