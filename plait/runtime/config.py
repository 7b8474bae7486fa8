"""Model configuration owned by plait: one dataclass for Llama, Qwen2 and Qwen3 decoders.

`ModelConfig.from_hf` reads a transformers config (4.x `rope_scaling`/`rope_theta` or 5.x
`rope_parameters`) and validates that plait can run it; anything it cannot run raises a
ValueError that says what is unsupported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, cast

Family = Literal["llama", "qwen2", "qwen3"]
RopeKind = Literal["default", "linear", "llama3", "yarn"]

_FAMILY_BY_MODEL_TYPE: dict[str, Family] = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}


@dataclass(slots=True, kw_only=True)
class RopeConfig:
    """Rotary position embedding parameters."""

    theta: float = 10000.0  # base of the geometric frequency ladder
    kind: RopeKind = "default"  # frequency scaling family
    rotary_dim: int = 64  # leading dims of each head that rotate (partial rotary if < head_dim)
    factor: float = 1.0  # context extension factor (linear, llama3, yarn)
    original_max_position: int | None = None  # pre-extension context (llama3, yarn)
    low_freq_factor: float = 1.0  # llama3
    high_freq_factor: float = 4.0  # llama3
    beta_fast: float = 32.0  # yarn
    beta_slow: float = 1.0  # yarn
    attention_factor: float | None = None  # yarn: explicit cos/sin magnitude scale
    mscale: float | None = None  # yarn (DeepSeek style)
    mscale_all_dim: float | None = None  # yarn (DeepSeek style)
    truncate: bool = True  # yarn: round correction range to integers

    def __post_init__(self) -> None:
        if self.kind not in ("default", "linear", "llama3", "yarn"):
            raise ValueError(
                f"rope kind {self.kind!r} is not supported; use one of default, linear, llama3, yarn"
            )
        if self.rotary_dim <= 0 or self.rotary_dim % 2:
            raise ValueError(f"rotary_dim must be a positive even number, got {self.rotary_dim}")
        for name in ("theta", "factor"):
            if not 0 < getattr(self, name) < math.inf:  # also refuses NaN
                raise ValueError(
                    f"rope {name} must be a finite number > 0, got {getattr(self, name)}"
                )
        if self.kind in ("llama3", "yarn") and not self.original_max_position:
            raise ValueError(f"rope kind {self.kind!r} needs original_max_position_embeddings")


@dataclass(slots=True, kw_only=True)
class ModelConfig:
    """Shape and numerics of a decoder-only transformer."""

    family: Family
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_eps: float = 1e-6
    qkv_bias: bool = False  # bias on q/k/v projections (Qwen2)
    o_bias: bool = False  # bias on the output projection
    mlp_bias: bool = False
    qk_norm: bool = False  # per-head RMSNorm on q and k before RoPE (Qwen3)
    tie_embeddings: bool = False
    max_position: int = 4096  # trained context length
    rope: RopeConfig = field(default_factory=RopeConfig)
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "max_position",
        ):
            if type(getattr(self, name)) is not int:
                raise TypeError(f"{name} must be an int, got {getattr(self, name)!r}")
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.rms_eps < math.inf:  # a negative epsilon can divide by ~0 (NaN)
            raise ValueError(f"rms_norm_eps must be a finite number >= 0, got {self.rms_eps}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )
        if self.rope.rotary_dim > self.head_dim:
            raise ValueError(f"rotary_dim {self.rope.rotary_dim} exceeds head_dim {self.head_dim}")

    @property
    def group_size(self) -> int:
        """Query heads per KV head (GQA ratio)."""
        return self.num_heads // self.num_kv_heads

    @classmethod
    def from_hf(cls, hf: Any) -> ModelConfig:
        """Build from a transformers `PretrainedConfig` (Llama, Mistral, Qwen2, Qwen3)."""
        model_type = getattr(hf, "model_type", None)
        family = _FAMILY_BY_MODEL_TYPE.get(str(model_type))
        if family is None:
            raise ValueError(
                f"model_type {model_type!r} is not supported by plait's runtime; supported: "
                f"{sorted(_FAMILY_BY_MODEL_TYPE)}"
            )
        head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
        rope = _rope_from_hf(hf, head_dim)
        eos = getattr(hf, "eos_token_id", None)
        eos_ids = (
            tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
        )
        if family == "qwen2":
            qkv_bias = True
        else:
            qkv_bias = bool(getattr(hf, "attention_bias", False))
        return cls(
            family=family,
            vocab_size=hf.vocab_size,
            hidden_size=hf.hidden_size,
            intermediate_size=hf.intermediate_size,
            num_layers=hf.num_hidden_layers,
            num_heads=hf.num_attention_heads,
            num_kv_heads=getattr(hf, "num_key_value_heads", None) or hf.num_attention_heads,
            head_dim=head_dim,
            rms_eps=float(getattr(hf, "rms_norm_eps", 1e-6)),
            qkv_bias=qkv_bias,
            o_bias=bool(getattr(hf, "attention_bias", False)) and family != "qwen2",
            mlp_bias=bool(getattr(hf, "mlp_bias", False)),
            qk_norm=family == "qwen3",
            tie_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            max_position=int(getattr(hf, "max_position_embeddings", 4096)),
            rope=rope,
            bos_token_id=getattr(hf, "bos_token_id", None),
            eos_token_ids=eos_ids,
        )


def _rope_from_hf(hf: Any, head_dim: int) -> RopeConfig:
    params: dict[str, Any] = {}
    scaling = getattr(hf, "rope_parameters", None) or getattr(hf, "rope_scaling", None) or {}
    params.update(scaling)
    theta = float(params.get("rope_theta", getattr(hf, "rope_theta", 10000.0) or 10000.0))
    kind = params.get("rope_type", params.get("type", "default")) or "default"
    if kind not in ("default", "linear", "llama3", "yarn"):
        raise ValueError(
            f"rope_type {kind!r} is not supported by plait (dynamic NTK changes frequencies with "
            "the sequence length, which breaks position-shifted caches); use default, linear, "
            "llama3 or yarn"
        )
    partial = float(
        params.get("partial_rotary_factor", getattr(hf, "partial_rotary_factor", 1.0) or 1.0)
    )
    rotary_dim = int(head_dim * partial)
    orig = params.get("original_max_position_embeddings")
    if kind == "yarn" and orig is None:
        orig = getattr(hf, "max_position_embeddings", None)
    return RopeConfig(
        theta=theta,
        kind=cast(RopeKind, kind),
        rotary_dim=rotary_dim,
        factor=float(params.get("factor", 1.0) or 1.0),
        original_max_position=int(orig) if orig else None,
        low_freq_factor=float(params.get("low_freq_factor", 1.0)),
        high_freq_factor=float(params.get("high_freq_factor", 4.0)),
        beta_fast=float(params.get("beta_fast") or 32.0),
        beta_slow=float(params.get("beta_slow") or 1.0),
        attention_factor=params.get("attention_factor"),
        mscale=params.get("mscale"),
        mscale_all_dim=params.get("mscale_all_dim"),
        truncate=bool(params.get("truncate", True)),
    )
