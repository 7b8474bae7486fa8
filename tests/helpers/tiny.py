"""Tiny random-weight models for tests: transformers reference + plait `DecoderLM` twin.

Every parameter (biases and norm weights included) is drawn at random, so a wrong bias, norm or
head layout cannot hide behind an initialisation of zeros or ones. The one source of tiny models
for every test package (runtime, hogwild, eval, loader checkpoints).
"""

from __future__ import annotations

from typing import Any

import torch

from plait.runtime.model import DecoderLM

FAMILIES = ("llama", "qwen2", "qwen3")


def hf_config(
    family: str = "llama",
    *,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    layers: int = 2,
    vocab: int = 128,
    tie: bool = False,
    bias: bool | None = None,
    rope_scaling: dict[str, Any] | None = None,
    max_position: int = 2048,
    partial_rotary: float | None = None,
    intermediate: int = 96,
    rope_theta: float | None = None,
    bos: int | None = None,
    eos: int | None = None,
) -> Any:
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]
    kw: dict[str, Any] = dict(
        hidden_size=heads * head_dim,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_position_embeddings=max_position,
        rms_norm_eps=1e-6,
    )
    if bias is not None and family != "qwen2":
        kw["attention_bias"] = bias
    if rope_scaling is not None:
        kw["rope_scaling"] = dict(rope_scaling)
    if rope_theta is not None:
        kw["rope_theta"] = rope_theta
    kw.update({k: v for k, v in (("bos_token_id", bos), ("eos_token_id", eos)) if v is not None})
    cfg = cls(**kw)
    if partial_rotary is not None:
        cfg.partial_rotary_factor = partial_rotary
        if getattr(cfg, "rope_parameters", None) is not None:
            cfg.rope_parameters["partial_rotary_factor"] = partial_rotary
    return cfg


def tiny_hf(
    family: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32, **kw: Any
) -> Any:
    """A random transformers causal LM in eval mode; `kw` go to `hf_config`."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    hf = AutoModelForCausalLM.from_config(hf_config(family, **kw), dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))
    return hf.to(dtype)


def tiny_pair(
    family: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32, **kw: Any
) -> tuple[Any, DecoderLM]:
    """(transformers model, plait model) with identical random weights, in eval mode."""
    hf = tiny_hf(family, seed, dtype, **kw)
    return hf, DecoderLM.from_hf(hf)


def tiny_model(
    family: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32, **kw: Any
) -> DecoderLM:
    """The plait half of `tiny_pair`."""
    return tiny_pair(family, seed, dtype, **kw)[1]
