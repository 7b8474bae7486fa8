"""Rotary position embeddings: frequencies for default / linear / llama3 / YaRN scaling.

Two kinds of rotation are used:
- absolute: `cos_sin(positions)` includes the scaling's magnitude factor (YaRN's attention
  factor), exactly as the model was trained, and rotates q and k at their positions;
- relative shift: `shift_cos_sin(delta)` is a pure rotation (no magnitude factor). Moving a stored
  key from position p to p + d is `shift(rope(k, p), d) == rope(k, p + d)`; reusing the scaled
  tables here would apply the factor twice (a bug of the original Hogwild code).
Only the first `rotary_dim` dims of a head rotate (partial rotary); the rest pass through.
Rotation layout is "rotate half" (dims i and i + rotary_dim/2 form a pair), as in HF checkpoints.
"""

from __future__ import annotations

import math

import torch

from plait.runtime.config import RopeConfig


def inverse_frequencies(cfg: RopeConfig) -> tuple[torch.Tensor, float]:
    """Return (inv_freq (rotary_dim/2,) float64, attention_factor) for a RoPE config."""
    dim = cfg.rotary_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim  # (dim/2,)
    inv_freq = 1.0 / (cfg.theta**exponents)
    factor = 1.0
    if cfg.kind == "linear":
        inv_freq = inv_freq / cfg.factor
    elif cfg.kind == "llama3":
        inv_freq = _llama3(inv_freq, cfg)
    elif cfg.kind == "yarn":
        inv_freq, factor = _yarn(cfg)
    return inv_freq, factor


def _llama3(inv_freq: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    old_len = float(cfg.original_max_position or 8192)
    low_wavelen = old_len / cfg.low_freq_factor
    high_wavelen = old_len / cfg.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / cfg.factor, inv_freq)
    smooth = (old_len / wavelen - cfg.low_freq_factor) / (
        cfg.high_freq_factor - cfg.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / cfg.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(cfg: RopeConfig) -> tuple[torch.Tensor, float]:
    dim, base, factor = cfg.rotary_dim, cfg.theta, cfg.factor
    max_pos = float(cfg.original_max_position or 4096)
    if cfg.attention_factor is not None:
        attn = float(cfg.attention_factor)
    elif cfg.mscale and cfg.mscale_all_dim:
        attn = _yarn_mscale(factor, cfg.mscale) / _yarn_mscale(factor, cfg.mscale_all_dim)
    else:
        attn = _yarn_mscale(factor)

    def correction_dim(rotations: float) -> float:
        return dim * math.log(max_pos / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(cfg.beta_fast), correction_dim(cfg.beta_slow)
    if cfg.truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    pos_freqs = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - ramp  # 1 = high-frequency dims kept as trained (extrapolate)
    return interpolation * (1 - keep) + extrapolation * keep, attn


class Rope:
    """RoPE tables for one model; all methods take integer positions of any shape."""

    def __init__(self, cfg: RopeConfig, head_dim: int) -> None:
        self.cfg = cfg
        self.head_dim = head_dim
        self.rotary_dim = cfg.rotary_dim
        inv_freq, self.attention_factor = inverse_frequencies(cfg)
        self.inv_freq = inv_freq  # (rotary_dim/2,) float64 on CPU

    def _angles(self, positions: torch.Tensor, exact: bool = False) -> torch.Tensor:
        inv = self.inv_freq.to(positions.device)
        # NOTE: float32 angles as HF computes them, so logits match transformers to 1e-5;
        # `exact=True` (the float64 reference path) computes them in float64.
        work = torch.float64 if exact else torch.float32
        freqs = positions.to(work)[..., None] * inv.to(work)  # (..., R/2)
        return torch.cat([freqs, freqs], dim=-1)  # (..., R)

    def cos_sin(
        self, positions: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled tables for absolute rotation at `positions`: each (..., rotary_dim)."""
        ang = self._angles(positions, exact=dtype == torch.float64)
        return (ang.cos() * self.attention_factor).to(dtype), (
            ang.sin() * self.attention_factor
        ).to(dtype)

    def shift_cos_sin(
        self, delta: torch.Tensor, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Unscaled tables that move a rotated vector by `delta` positions: each (..., rotary_dim)."""
        ang = self._angles(delta, exact=dtype == torch.float64)
        return ang.cos().to(dtype), ang.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] dims of x (..., D); cos/sin broadcast over x's leading dims."""
    r = cos.shape[-1]
    if r == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    rot, rest = x[..., :r], x[..., r:]
    return torch.cat([rot * cos + _rotate_half(rot) * sin, rest], dim=-1)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
