"""The int8 kernel's activation quantisation, in numpy: the reference twin of `quant_dot8.cpp`.

The int8 path (`PackedWeight.int8`, the default for GGUF weights) quantises each activation row
per block, as llama.cpp does: blocks of 32 elements for the 32-element-block GGUF types (Q8_0,
Q5_0, Q4_1), 256 for the K-quants (Q4_K, Q6_K); scale d = max|x| / 127 (fp32), quants
round(x x (1 / d)) to nearest even (0 where the block is zero), the row zero-padded to whole
64-element chunks. After that the kernel's arithmetic is exact integers until the fp32 scales,
so `linear_reference` (the dequantised quants times the dequantised weights in float64) is the
result up to fp32 scale rounding and the output's bf16 rounding.
"""

from __future__ import annotations

import numpy as np
import torch

from plait.runtime.quant import formats


def block_of(qtype: str) -> int:
    """Activation block length the int8 kernel uses against weights of `qtype`: 256 against the
    superblock types (the K-quants), else 32."""
    return 256 if qtype in formats.SUPER_TYPES else 32


def quantize(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """x (R, K) float32 -> (quants int8 (R, C x 64), scales float32 (R, C x 64 / block))."""
    r, k = x.shape
    padded = np.zeros((r, formats.chunks(k) * 64), np.float32)
    padded[:, :k] = x
    b = padded.reshape(r, -1, block)  # (R, blocks, block)
    d = (np.abs(b).max(axis=-1) / np.float32(127)).astype(np.float32)
    inv = np.divide(np.float32(1), d, out=np.zeros_like(d), where=d != 0).astype(np.float32)
    q = np.rint(b * inv[..., None]).astype(np.int8)
    return q.reshape(r, -1), d


def dequantized(x: torch.Tensor, qtype: str) -> torch.Tensor:
    """What the kernel's quants of x (R, K) stand for against `qtype` weights, float64 (R, K)."""
    block = block_of(qtype)
    k = x.shape[-1]
    q, d = quantize(x.float().numpy(), block)
    xh = q.astype(np.float64).reshape(q.shape[0], -1, block) * d[..., None].astype(np.float64)
    return torch.from_numpy(xh.reshape(q.shape[0], -1)[:, :k])


def linear_reference(
    x: torch.Tensor, packs: list[torch.Tensor], types: list[int], k: int,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """The int8 path's y (R, sum O_i) in float64: each segment's weights (numpy decoder) times
    x quantised for that segment's type, plus bias."""
    out = []
    for p, t in zip(packs, types):
        w = torch.from_numpy(formats.unpack(p.numpy(), formats.NAMES[t], k)).double()  # (O_i, K)
        out.append(dequantized(x, formats.NAMES[t]) @ w.T)
    y = torch.cat(out, dim=1)
    return y if bias is None else y + bias.double()
