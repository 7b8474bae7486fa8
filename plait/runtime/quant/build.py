"""Install packed GGUF weights into a `DecoderLM` built on the meta device.

A cache entry converted with packed weights (plait.runtime.loading.conversion) holds, for each
GGUF tensor of a packed type, `<transformers name>.qpack` (uint8) and `.qmeta` ([type, rows,
K]) instead of a dense tensor. `install_packed` turns the fused projections (q|k|v, gate|up),
o, down, the embedding and the head into QuantLinear / QuantEmbedding modules and returns the
remaining dense tensors under plait's names, for `load_state_dict(assign=True)`. A fused
projection with a part that is not packed (a GGUF type without a packed layout) is dequantised
whole to bf16, like every dense tensor.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from plait.runtime.config import ModelConfig
from plait.runtime.quant.weight import (
    QMETA,
    QPACK,
    PackedWeight,
    QuantEmbedding,
    QuantLinear,
    concat,
    from_state,
)


def is_packed(sd: dict[str, torch.Tensor]) -> bool:
    """Whether a cache state dict holds packed weights."""
    return any(k.endswith(QMETA) for k in sd)


def _dense(sd: dict[str, torch.Tensor], name: str, dtype: torch.dtype) -> torch.Tensor:
    packed = from_state(sd, name)
    if packed is not None:
        return packed.dense(dtype)
    if name not in sd:
        raise ValueError(f"checkpoint is missing {name!r}; the weights are incomplete or corrupt")
    return sd[name].to(dtype)


def _fused(
    sd: dict[str, torch.Tensor], names: list[str], dtype: torch.dtype
) -> PackedWeight | torch.Tensor:
    """The row concatenation of `names`: packed if every part is, else dense in `dtype`."""
    parts = [from_state(sd, n) for n in names]
    if all(p is not None for p in parts):
        return concat([p for p in parts if p is not None])
    return torch.cat([_dense(sd, n, dtype) for n in names])


def _bias(sd: dict[str, torch.Tensor], names: list[str]) -> torch.Tensor | None:
    if not all(n in sd for n in names):
        return None
    return torch.cat([sd[n].float() for n in names])


def _linear(
    w: PackedWeight | torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype
) -> nn.Module:
    if isinstance(w, PackedWeight):
        return QuantLinear(w, bias)
    lin = nn.Linear(w.shape[1], w.shape[0], bias=bias is not None)
    lin.weight = nn.Parameter(w.to(dtype), requires_grad=False)
    if bias is not None:
        lin.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
    return lin


def install_packed(
    model: nn.Module, cfg: ModelConfig, sd: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Put the projections, embedding and head of `sd` into `model` (a meta-device DecoderLM);
    returns the other tensors (norms) under plait's names, cast to `dtype`."""
    rest: dict[str, torch.Tensor] = {"norm.weight": sd["model.norm.weight"].to(dtype)}
    emb = from_state(sd, "model.embed_tokens.weight")
    if emb is not None:
        model.embed = QuantEmbedding(emb)
    else:
        rest["embed.weight"] = _dense(sd, "model.embed_tokens.weight", dtype)
    if not cfg.tie_embeddings:
        head = _fused(sd, ["lm_head.weight"], dtype)
        model.lm_head = _linear(head, None, dtype)
    for i, layer in enumerate(cast(nn.ModuleList, model.layers)):
        p, a, m = f"model.layers.{i}.", f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        qkv = [a + f"{n}_proj" for n in "qkv"]
        layer.qkv = _linear(
            _fused(sd, [n + ".weight" for n in qkv], dtype),
            _bias(sd, [n + ".bias" for n in qkv]) if cfg.qkv_bias else None,
            dtype,
        )
        o_bias = _bias(sd, [a + "o_proj.bias"]) if cfg.o_bias else None
        layer.o = _linear(_fused(sd, [a + "o_proj.weight"], dtype), o_bias, dtype)
        gu = [m + "gate_proj", m + "up_proj"]
        gu_bias = _bias(sd, [n + ".bias" for n in gu]) if cfg.mlp_bias else None
        layer.gate_up = _linear(_fused(sd, [n + ".weight" for n in gu], dtype), gu_bias, dtype)
        d_bias = _bias(sd, [m + "down_proj.bias"]) if cfg.mlp_bias else None
        layer.down = _linear(_fused(sd, [m + "down_proj.weight"], dtype), d_bias, dtype)
        o = f"layers.{i}."
        rest[o + "input_norm.weight"] = sd[p + "input_layernorm.weight"].to(dtype)
        rest[o + "post_norm.weight"] = sd[p + "post_attention_layernorm.weight"].to(dtype)
        if cfg.qk_norm:
            rest[o + "q_norm.weight"] = sd[a + "q_norm.weight"].to(dtype)
            rest[o + "k_norm.weight"] = sd[a + "k_norm.weight"].to(dtype)
    return rest


def set_int8(model: nn.Module, int8: bool) -> None:
    """Set how every packed matrix of `model` meets its activations: int8-quantised per row and
    block (True) or exact bf16 (False); see plait.runtime.loading.packed."""
    for mod in model.modules():
        if isinstance(mod, QuantLinear):
            mod.set_int8(int8)


def packed_types(model: nn.Module) -> dict[str, int]:
    """GGUF type -> number of packed matrices in `model` (empty when nothing is packed)."""
    out: dict[str, int] = {}
    for mod in model.modules():
        if isinstance(mod, (QuantLinear, QuantEmbedding)):
            for t in mod.weight.type_names:
                out[t] = out.get(t, 0) + 1
    return out


def resident_bytes(model: nn.Module) -> int:
    """Bytes of weights the model holds in memory (packed blocks + dense tensors)."""
    total = 0
    for mod in model.modules():
        if isinstance(mod, (QuantLinear, QuantEmbedding)):
            total += mod.weight.nbytes
    seen: set[int] = set()
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if name.rsplit(".", 1)[-1].startswith("pack") or t.is_meta or id(t) in seen:
            continue
        if "rope" in name:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


__all__ = ["QPACK", "install_packed", "is_packed", "packed_types", "resident_bytes", "set_int8"]
