"""Read a GGUF file into a transformers-format config, state dict and tokenizer.

Tensors are dequantised to float32 with the `gguf` package and renamed to transformers
parameter names. llama.cpp stores the q/k projections of the `llama` architecture with the rows
of each head interleaved (its rotary convention); `unpermute_qk` undoes that. Config and
tokenizer (with the chat template from the GGUF metadata) come from transformers' GGUF support,
which needs no model instance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from plait.runtime.loading.errors import CorruptModelError

# GGUF architecture -> transformers model_type / architectures entry.
_ARCHES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

_TOP_LEVEL = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_PER_LAYER = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_output.bias": "self_attn.o_proj.bias",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
# Tensors whose content the config already carries (llama3 rope frequency factors).
_IGNORED = {"rope_freqs.weight"}

_FIX = "the file is truncated or not a GGUF model; download or reinstall it"


def open_gguf(path: Path) -> Any:
    """A `gguf.GGUFReader` over `path`; CorruptModelError if it cannot be parsed."""
    from gguf import GGUFReader

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ValueError(f"bad magic {magic!r}, expected b'GGUF'")
        return GGUFReader(str(path))
    except (OSError, ValueError, IndexError, KeyError, TypeError) as exc:
        raise CorruptModelError(f"cannot read GGUF file {path}: {exc}; {_FIX}") from exc


def architecture(reader: Any) -> str:
    field = reader.fields.get("general.architecture")
    arch = field.contents() if field is not None else None
    if arch not in _ARCHES:
        raise ValueError(
            f"GGUF architecture {arch!r} is not supported by plait; supported: {sorted(_ARCHES)}"
        )
    return str(arch)


def hf_name(gguf_name: str) -> str | None:
    """transformers parameter name for a GGUF tensor name (None for tensors to skip)."""
    if gguf_name in _IGNORED:
        return None
    if gguf_name in _TOP_LEVEL:
        return _TOP_LEVEL[gguf_name]
    parts = gguf_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _PER_LAYER:
        return f"model.layers.{parts[1]}.{_PER_LAYER[parts[2]]}"
    raise ValueError(f"GGUF tensor {gguf_name!r} has no transformers equivalent plait knows")


def permute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """transformers (rotate-half) row order -> llama.cpp (interleaved pairs) row order per head."""
    rows = w.shape[0]
    return (
        w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    )


def unpermute_qk(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `permute_qk`: llama.cpp row order -> transformers row order."""
    rows = w.shape[0]
    return (
        w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)
    )


def storage_dtype(tensor_type: Any) -> torch.dtype:
    """dtype a dequantised tensor is cached in.

    Quantised tensors are cached in bf16, the default runtime dtype, so the default load reads
    them without a conversion pass (what keeps later loads under 2 s on 2 CPU cores). The
    rounding (at most 2^-8 relative) is exactly what a bf16 load applies anyway; an fp32 load
    of a GGUF model therefore computes in fp32 on bf16-rounded weights. Plain F32/F16 tensors
    (norms, biases) keep their own dtype.
    """
    from gguf import GGMLQuantizationType as Q

    if tensor_type in (Q.F32, Q.F64):
        return torch.float32
    if tensor_type == Q.F16:
        return torch.float16
    return torch.bfloat16


def state_dict(
    reader: Any,
    hf_config: Any,
    progress: Callable[[], object] | None = None,
    packed: bool = False,
) -> dict[str, torch.Tensor]:
    """Dequantised tensors with transformers names (lm_head only if the GGUF has one).

    Each tensor is converted to `storage_dtype`; `progress()` is called once per GGUF tensor.
    With `packed`, matrices of a type plait computes on (plait.runtime.quant.formats.TYPES)
    are kept as packed blocks instead: `<name>.qpack` (uint8) and `<name>.qmeta`.
    """
    from gguf.quants import dequantize

    arch = architecture(reader)
    out: dict[str, torch.Tensor] = {}
    for t in reader.tensors:
        if progress is not None:
            progress()
        name = hf_name(t.name)
        if name is None:
            continue
        if packed and _pack_into(out, t, name, arch, hf_config):
            continue
        try:
            arr = dequantize(t.data, t.tensor_type)  # numpy order: (out, in)
        except (ValueError, IndexError, TypeError, NotImplementedError) as exc:
            raise CorruptModelError(
                f"cannot dequantise GGUF tensor {t.name!r}: {exc}; {_FIX}"
            ) from exc
        w = torch.from_numpy(np.array(arr, dtype=np.float32, order="C"))  # owned float32 copy
        expected = tuple(int(d) for d in reversed(t.shape.tolist()))
        if tuple(w.shape) != expected:
            if w.numel() != int(np.prod(expected)):
                raise CorruptModelError(
                    f"GGUF tensor {t.name!r} has {w.numel()} values, its header says {expected}; {_FIX}"
                )
            w = w.reshape(expected)
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = (
                hf_config.num_attention_heads if "q_proj" in name else hf_config.num_key_value_heads
            )
            w = unpermute_qk(w, heads)
        out[name] = w.to(storage_dtype(t.tensor_type))
    return out


def _pack_into(out: dict[str, torch.Tensor], t: Any, name: str, arch: str, hf_config: Any) -> bool:
    """Store tensor `t` packed under `name` if its type has a packed layout (True if done)."""
    from plait.runtime.quant import formats
    from plait.runtime.quant.weight import QMETA, QPACK, pack_tensor

    qtype = t.tensor_type.name
    if qtype not in formats.TYPES or len(t.shape) != 2:
        return False
    k, rows = (int(d) for d in t.shape.tolist())
    try:
        w = pack_tensor(np.asarray(t.data).reshape(rows, -1), qtype, k)  # (rows, row bytes)
    except ValueError as exc:
        raise CorruptModelError(f"cannot read GGUF tensor {t.name!r}: {exc}; {_FIX}") from exc
    if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
        heads = hf_config.num_attention_heads if "q_proj" in name else hf_config.num_key_value_heads
        w = unpermute_qk(w, heads)  # rows are whole packed rows: the same permutation
    out[name + QPACK] = w.contiguous()
    out[name + QMETA] = torch.tensor([formats.TYPES[qtype], rows, k], dtype=torch.int64)
    return True


def dense_types(reader: Any) -> list[str]:
    """Quantized GGUF matrix types that have no packed layout (they are dequantised to bf16)."""
    from plait.runtime.quant import formats

    skip = {"F32", "F64", "F16", "BF16", *formats.TYPES}
    return sorted({t.tensor_type.name for t in reader.tensors if t.tensor_type.name not in skip})


def hf_config(path: Path, reader: Any) -> Any:
    """transformers config for the GGUF, ready to save as a plain (unquantised) config.json."""
    from transformers import AutoConfig

    arch = architecture(reader)
    try:
        cfg = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptModelError(
            f"cannot read the config of GGUF file {path}: {exc}; {_FIX}"
        ) from exc
    cfg.architectures = [_ARCHES[arch]]
    # The head is tied exactly when the GGUF has no separate output tensor.
    cfg.tie_word_embeddings = not any(t.name == "output.weight" for t in reader.tensors)
    for key in [k for k in vars(cfg) if "quantiz" in k or "gguf" in k]:
        delattr(cfg, key)
    return cfg


def tokenizer(path: Path) -> Any:
    """HF fast tokenizer converted from the GGUF vocabulary (chat template included)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptModelError(
            f"cannot read the tokenizer of GGUF file {path}: {exc}; {_FIX}"
        ) from exc
