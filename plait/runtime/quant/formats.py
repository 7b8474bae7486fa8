"""GGUF quantized blocks -> plait's packed layout (what `kernels/quant_linear.cpp` streams).

Each GGUF type is decoded here to its integers and scales (numpy, from the block layouts of
ggml's quants), then re-encoded per 64-element chunk so that the kernel unpacks a chunk into
64 bytes with a few vector ops: 4-bit values as "nibbles" (byte j = element j | element 32 + j
<< 4), Q5_0's fifth bit as a 64-bit mask, Q6_K's top two bits as 16 bytes (bits 2k..2k+1 of
byte j = element 16 k + j), Q8_0's int8 bytes as they are. Sizes match the GGUF's (Q4_K: 148 bytes
per 256 instead of 144: d, dmin, its eight 6-bit scales and eight mins unpacked to bytes, then
the four chunks' nibbles; a superblock's scales sit together so that the kernel loads them
once). Rows are padded with zero weights to whole chunks (64 elements; 256 for the K types,
which GGUF already requires).

`unpack` decodes a packed matrix back to float32 without the kernel: the twin that tests hold
against `gguf.quants.dequantize` of the original blocks.
"""

from __future__ import annotations

import numpy as np

TYPES: dict[str, int] = {"Q8_0": 0, "Q5_0": 1, "Q4_1": 2, "Q4_K": 3, "Q6_K": 4}
"""Packed types and their codes in the kernel."""
NAMES: dict[int, str] = {code: name for name, code in TYPES.items()}
"""Kernel type code -> GGUF type name."""
_BLOCK = {
    "Q8_0": (32, 34),
    "Q5_0": (32, 22),
    "Q4_1": (32, 20),
    "Q4_K": (256, 144),
    "Q6_K": (256, 210),
}
_CHUNK_BYTES = {"Q8_0": 68, "Q5_0": 44, "Q4_1": 40}
_SUPER_BYTES = {"Q4_K": 148, "Q6_K": 210}
SUPER_TYPES = tuple(_SUPER_BYTES)
"""The 256-element superblock types (the K-quants); the others have 32-element blocks."""


def chunks(k: int) -> int:
    """64-element chunks per row of length k."""
    return -(-k // 64)


def row_bytes(qtype: str, k: int) -> int:
    """Bytes of one packed row of k elements."""
    c = chunks(k)
    if qtype in _CHUNK_BYTES:
        return c * _CHUNK_BYTES[qtype]
    if k % 256:
        raise ValueError(f"{qtype} rows must be a multiple of 256 elements, got {k}")
    return c // 4 * _SUPER_BYTES[qtype]


def _blocks(raw: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """Raw GGUF bytes (O, row bytes) -> (O, blocks, block bytes), zero blocks padding to chunks."""
    n, size = _BLOCK[qtype]
    if k % n:
        raise ValueError(f"{qtype} rows must be a multiple of {n} elements, got {k}")
    rows = raw.reshape(raw.shape[0], -1)
    if rows.shape[1] != k // n * size:
        raise ValueError(
            f"{qtype} row of {k} elements must hold {k // n * size} bytes, got {rows.shape[1]}"
        )
    b = rows.reshape(rows.shape[0], k // n, size)
    want = chunks(k) * 64 // n
    if want > b.shape[1]:
        b = np.concatenate([b, np.zeros((b.shape[0], want - b.shape[1], size), np.uint8)], axis=1)
    return b


def _f16(b: np.ndarray, at: int) -> np.ndarray:
    """fp16 fields at byte `at` of every block, as (..., 2) bytes."""
    return np.ascontiguousarray(b[..., at : at + 2])


def _nibbles(q: np.ndarray) -> np.ndarray:
    """Low 4 bits of (..., 64) values -> (..., 32) bytes: element j | element 32 + j << 4."""
    lo = (q & 15).astype(np.uint8)
    return lo[..., :32] | (lo[..., 32:] << 4)


def _q4k_scales(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q4_K's 12 scale bytes (..., 12) -> 6-bit scales and mins (..., 8) each."""
    s = s.astype(np.uint8)
    sc = np.empty(s.shape[:-1] + (8,), np.uint8)
    mn = np.empty_like(sc)
    sc[..., :4] = s[..., 0:4] & 63
    mn[..., :4] = s[..., 4:8] & 63
    sc[..., 4:] = (s[..., 8:12] & 15) | ((s[..., 0:4] >> 6) << 4)
    mn[..., 4:] = (s[..., 8:12] >> 4) | ((s[..., 4:8] >> 6) << 4)
    return sc, mn


def _q6k_values(b: np.ndarray) -> np.ndarray:
    """Q6_K blocks (..., 210) -> unsigned 6-bit values (..., 256) in element order."""
    ql, qh = b[..., 0:128], b[..., 128:192]
    out = np.empty(b.shape[:-1] + (256,), np.uint8)
    for half in range(2):
        lq, hq = ql[..., 64 * half : 64 * half + 64], qh[..., 32 * half : 32 * half + 32]
        base = 128 * half
        out[..., base : base + 32] = (lq[..., :32] & 15) | (((hq >> 0) & 3) << 4)
        out[..., base + 32 : base + 64] = (lq[..., 32:] & 15) | (((hq >> 2) & 3) << 4)
        out[..., base + 64 : base + 96] = (lq[..., :32] >> 4) | (((hq >> 4) & 3) << 4)
        out[..., base + 96 : base + 128] = (lq[..., 32:] >> 4) | (((hq >> 6) & 3) << 4)
    return out


def pack(raw: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """GGUF blocks of an (O, k) matrix (raw bytes, O rows) -> packed uint8 (O, row_bytes)."""
    if qtype not in TYPES:
        raise ValueError(f"no packed layout for {qtype}; packed types are {sorted(TYPES)}")
    b = _blocks(np.asarray(raw, np.uint8), qtype, k)
    o = b.shape[0]
    if qtype == "Q8_0":
        d = _f16(b, 0).reshape(o, -1, 4)  # (O, C, d0 d1)
        q = np.ascontiguousarray(b[..., 2:]).reshape(o, -1, 64)  # int8 bytes as they are
        parts = [d, q]
    elif qtype == "Q5_0":
        d = _f16(b, 0).reshape(o, -1, 4)
        qh = np.ascontiguousarray(b[..., 2:6]).view("<u4")  # (O, blocks, 1)
        bit = ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)  # (O, blocks, 32)
        qs = b[..., 6:22]
        lo = np.concatenate([qs & 15, qs >> 4], axis=-1).reshape(o, -1, 64)
        bits = np.packbits(bit.reshape(o, -1, 64), axis=-1, bitorder="little")  # (O, C, 8)
        parts = [d, bits, _nibbles(lo)]
    elif qtype == "Q4_1":
        dm = b[..., 0:4].reshape(o, -1, 2, 2, 2)  # (O, C, block, d|m, byte)
        qs = b[..., 4:20]
        lo = np.concatenate([qs & 15, qs >> 4], axis=-1).reshape(o, -1, 64)
        parts = [dm.transpose(0, 1, 3, 2, 4).reshape(o, -1, 8), _nibbles(lo)]
    elif qtype == "Q4_K":
        sc, mn = _q4k_scales(b[..., 4:16])  # (O, S, 8) each
        head = b[..., 0:4]  # d, dmin
        return np.concatenate([head, sc, mn, b[..., 16:144]], axis=-1).reshape(o, -1)
    else:  # Q6_K
        q6 = _q6k_values(b).reshape(o, b.shape[1], 4, 64)
        hi = (q6 >> 4).reshape(o, b.shape[1], 4, 4, 16)  # (.., chunk, k, j)
        top = (hi << (2 * np.arange(4, dtype=np.uint8))[:, None]).sum(axis=-2, dtype=np.uint8)
        chunk = np.concatenate([top, _nibbles(q6)], axis=-1).reshape(o, b.shape[1], -1)
        return np.concatenate([b[..., 208:210], b[..., 192:208], chunk], axis=-1).reshape(o, -1)
    return np.concatenate(parts, axis=-1).reshape(o, -1)


def _h(b: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(b).view("<f2").astype(np.float32)


def _unnibble(n: np.ndarray) -> np.ndarray:
    return np.concatenate([n & 15, n >> 4], axis=-1).astype(np.float32)


def unpack(packed: np.ndarray, qtype: str, k: int) -> np.ndarray:
    """Packed uint8 (O, row_bytes) -> float32 (O, k): the reference decoder of the layout."""
    o, c = packed.shape[0], chunks(k)
    if qtype in _CHUNK_BYTES:
        p = packed.reshape(o, c, _CHUNK_BYTES[qtype])
        if qtype == "Q8_0":
            s, q, m = _h(p[..., 0:4]), p[..., 4:].view(np.int8).astype(np.float32), None
        elif qtype == "Q5_0":
            bits = np.unpackbits(p[..., 4:12], axis=-1, bitorder="little").astype(np.float32)
            s, q, m = _h(p[..., 0:4]), _unnibble(p[..., 12:]) + 16 * bits - 16, None
        else:
            s, q, m = _h(p[..., 0:4]), _unnibble(p[..., 8:]), _h(p[..., 4:8])
        w = q.reshape(o, c, 2, 32) * s[..., None]
        if m is not None:
            w = w + m[..., None]
        return w.reshape(o, -1)[:, :k]
    p = packed.reshape(o, c // 4, _SUPER_BYTES[qtype])
    if qtype == "Q4_K":
        d, dmin = _h(p[..., 0:2]), _h(p[..., 2:4])  # (O, S, 1)
        s = d * p[..., 4:12].astype(np.float32)  # (O, S, 8): one per 32 elements
        m = -dmin * p[..., 12:20].astype(np.float32)
        q = _unnibble(p[..., 20:].reshape(o, -1, 4, 32)).reshape(o, -1, 8, 32)
        return (q * s[..., None] + m[..., None]).reshape(o, -1)[:, :k]
    d = _h(p[..., 0:2])  # (O, S, 1)
    sc = p[..., 2:18].view(np.int8).astype(np.float32)  # (O, S, 16)
    ch = p[..., 18:].reshape(o, -1, 4, 48)
    top = (ch[..., None, :16] >> (2 * np.arange(4, dtype=np.uint8))[:, None]) & 3  # (.., 4, 16)
    q = _unnibble(ch[..., 16:]) + 16 * top.reshape(o, -1, 4, 64).astype(np.float32) - 32
    w = q.reshape(o, -1, 16, 16) * (d * sc)[..., None]
    return w.reshape(o, -1)[:, :k]
