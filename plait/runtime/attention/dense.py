"""Dense attention context: explicit positions and an explicit boolean mask, no cache.

The simplest attention a `DecoderLM` can run (no `KVStore`, no step plan, no backend): every
query attends to the keys of the same forward pass allowed by `mask` (True = may attend), with
RoPE at `positions`. It serves parity tests (causal decoding of one sequence) and the
packed-trie training forward (positions = depth, ancestor-only mask).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from plait.runtime.rope import Rope, apply_rotary


class DenseContext:
    """Attention over the tokens of one forward pass.

    Args:
        rope: the model's `Rope`.
        positions: (T,) integer position of every token.
        mask: (T, T) bool, True where query i may attend key j; None means causal.
    """

    def __init__(
        self, rope: Rope, positions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> None:
        if positions.dim() != 1:
            raise ValueError(f"positions must be 1-D (T,), got shape {tuple(positions.shape)}")
        T = positions.shape[0]
        if mask is not None and tuple(mask.shape) != (T, T):
            raise ValueError(
                f"mask must have shape ({T}, {T}) to match positions, got {tuple(mask.shape)}"
            )
        self.rope = rope
        self.positions = positions
        self.mask = mask
        self._tables: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    def _cos_sin(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if dtype not in self._tables:
            cos, sin = self.rope.cos_sin(self.positions, dtype)  # (T, R)
            self._tables[dtype] = (cos[:, None, :], sin[:, None, :])  # (T, 1, R)
        return self._tables[dtype]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T, Hq, D = q.shape
        Hkv = k.shape[1]
        cos, sin = self._cos_sin(q.dtype)
        q = apply_rotary(q, cos, sin).transpose(0, 1)  # (Hq, T, D)
        k = apply_rotary(k, cos, sin).transpose(0, 1)  # (Hkv, T, D)
        v = v.transpose(0, 1)  # (Hkv, T, D)
        if Hq != Hkv:
            k = k.repeat_interleave(Hq // Hkv, dim=0)  # (Hq, T, D)
            v = v.repeat_interleave(Hq // Hkv, dim=0)
        if self.mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        return out.transpose(0, 1).reshape(T, Hq * D)  # (T, Hq*D)


def causal_context(
    rope: Rope, length: int, device: torch.device | str = "cpu", start: int = 0
) -> DenseContext:
    """A causal context for one sequence of `length` tokens at positions start..start+length-1."""
    return DenseContext(rope, torch.arange(start, start + length, device=device))
