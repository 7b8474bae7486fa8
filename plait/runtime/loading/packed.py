"""Whether a GGUF source loads with its blocks kept packed (quantized execution) or dequantised.

`dtype="auto"` (the default of `load_model` and the CLIs) keeps a GGUF's blocks packed on CPUs
where plait's quantized kernels run (plait.runtime.kernels.quant: AVX512-BF16 and VNNI) and
computes as llama.cpp does: each activation row quantised to int8 per block, int8 dot products
(`quant_dot8.cpp`); `dtype="gguf"` insists on it (ValueError naming the reason where it cannot);
`dtype="gguf-exact"` keeps the blocks but multiplies the GGUF's exact weights with the bf16
activations (`quant_linear.cpp`: no activation rounding, slower). "bf16", "fp16" and "fp32"
dequantise as before. Non-GGUF sources load dense: "auto" means bf16 there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from plait.runtime.cache_dir import read_meta

log = logging.getLogger(__name__)

MODES = ("auto", "gguf", "gguf-exact")
"""dtype values that are not a torch dtype: how to treat GGUF blocks."""
_warned: set[str] = set()


def is_mode(dtype: object) -> bool:
    return isinstance(dtype, str) and dtype in MODES


def compute_dtype(dtype: str | torch.dtype) -> torch.dtype | None:
    """The torch dtype a mode computes in (bf16), None for a plain dtype."""
    return torch.bfloat16 if is_mode(dtype) else None


def use_packed(dtype: str | torch.dtype, device: torch.device, gguf: bool) -> bool:
    """Whether to load this source packed; ValueError where dtype="gguf" cannot be honoured."""
    if not is_mode(dtype):
        return False
    from plait.runtime.kernels import quant

    why = ""
    if not gguf:
        why = "the source is not a GGUF file (only GGUF weights come quantized)"
    elif device.type != "cpu":
        why = f"quantized GGUF execution runs on CPUs, not {device.type}"
    else:
        why = quant.why_not()
    if dtype != "auto" and why:
        raise ValueError(f"dtype {dtype!r} cannot be used: {why}; use dtype bf16")
    return not why


def int8_activations(dtype: str | torch.dtype) -> bool:
    """Whether packed weights loaded with `dtype` quantise the activations (all modes but
    "gguf-exact")."""
    return dtype != "gguf-exact"


def note_dense_types(entry: Path) -> None:
    """Say once per entry which GGUF types of a packed entry were dequantised to bf16."""
    meta = read_meta(entry) or {}
    dense = meta.get("dense_types") or []
    if dense and str(entry) not in _warned:
        _warned.add(str(entry))
        log.warning(
            "%s: GGUF types %s have no packed kernel; those tensors are dequantised to bf16",
            entry.name,
            ", ".join(dense),
        )
