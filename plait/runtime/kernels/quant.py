"""plait's quantized-weight CPU kernels (GGUF blocks, AVX512-BF16), built on first use and cached.

`quant_linear(x, packs, types, k, bias)` computes `x @ W.T (+ bias)` for weights kept in
plait's packed GGUF layout (`plait.runtime.quant.formats`) with the GGUF's exact weights: each
block's integers meet the bf16 activations in AVX512-BF16 dot products and the block's fp32
scale (and offset) is applied afterwards (source and numerics: `quant_linear.cpp`). A row's
result never depends on how many rows share the call.
`quant_rows(pack, type, k, ids)` dequantises rows (embedding lookups). Type codes from
`tiles.TILE_CODE` name a segment in the tile layout (16 output rows interleaved, int8 path
only: `quant_tiles.cpp`); `tile_pack` builds it.

A second extension next to `plait.runtime.kernels` (its own source hash and build directory,
so the two build and change independently). It runs on x86-64 Linux CPUs with AVX512F/BW/VL/
DQ, AVX512-BF16 and F16C; `why_not()` says why not elsewhere, and the caller then dequantises to
bf16 instead. `PLAIT_KERNELS=0` turns it off like the other kernels.
"""

from __future__ import annotations

import hashlib
import threading
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from plait.runtime import kernels
from plait.runtime.cache_dir import cache_root
from plait.runtime.kernels.build import build_or_explain

_SOURCE = Path(__file__).with_name("quant_linear.cpp")
_SOURCES = [_SOURCE, _SOURCE.with_name("quant_dot8.cpp"), _SOURCE.with_name("quant_tiles.cpp")]
_HEADERS = [
    _SOURCE.with_name("quant_common.h"),
    _SOURCE.with_name("quant_rows8.h"),
]  # hashed, not compiled on their own
_CFLAGS = [
    "-O3",
    "-mavx512f",
    "-mavx512bw",
    "-mavx512vl",
    "-mavx512dq",
    "-mavx512bf16",
    "-mavx512vnni",
    "-mf16c",
    "-mfma",
    "-fopenmp",
]
REQUIRED_FLAGS = (
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512dq",
    "avx512_bf16",
    "avx512_vnni",
    "f16c",
    "fma",
)
_lock = threading.Lock()
_module: ModuleType | None = None
_failed: str | None = None


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@cache
def cpu_supported() -> tuple[bool, str]:
    """(supported, reason): x86-64 Linux with AVX512F/BW/VL/DQ, AVX512-BF16, AVX512-VNNI, F16C
    and FMA."""
    ok, why = kernels.cpu_supported()  # x86-64 Linux with AVX512 (and BF16 for the bf16 math)
    if not ok:
        return False, why
    missing = [f for f in REQUIRED_FLAGS if f not in _cpu_flags()]
    if missing:
        return False, f"CPU lacks {', '.join(missing)}"
    return True, ""


def build_dir() -> Path:
    """Build directory keyed by source, flags, torch version and source location."""
    h = hashlib.sha256(" ".join(_CFLAGS).encode() + torch.__version__.encode())
    h.update(str(_SOURCE.resolve().parent).encode())
    for src in _SOURCES + _HEADERS:
        h.update(src.read_bytes())
    return cache_root() / "kernels" / f"quant-{h.hexdigest()[:16]}"


def _load() -> ModuleType | None:
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    with _lock:
        if _module is not None or _failed is not None:
            return _module
        ok, why = cpu_supported()
        if not ok:
            _failed = why
            return None
        _module, _failed = build_or_explain(
            "plait_quant_kernels", _SOURCES, build_dir(), _CFLAGS,
            "plait: quantized CPU kernels unavailable ({}); GGUF weights are dequantised to bf16 "
            "instead",
        )  # fmt: skip
        return _module


def why_not() -> str:
    """Why quantized execution cannot run here ('' when it can): kernels enabled, CPU support,
    a successful build."""
    if not kernels.enabled():
        return f"{kernels.ENV}=0"
    if _load() is None:
        return _failed or "unavailable"
    return ""


def available() -> bool:
    return not why_not()


def _require() -> ModuleType:
    mod = _load() if kernels.enabled() else None
    if mod is None:
        raise RuntimeError(f"plait quantized kernels unavailable: {why_not()}")
    return mod


def quant_linear(
    x: torch.Tensor,
    packs: list[torch.Tensor],
    types: list[int],
    k: int,
    bias: torch.Tensor | None = None,
    int8: bool = False,
) -> torch.Tensor:
    """x (R, k) bf16 @ [W_0; W_1; ...].T (+ bias fp32) -> (R, sum O_i) bf16; packs[i] uint8
    (O_i, row bytes) in the packed layout of type code types[i]. `int8`: activations quantised
    per row and block to int8, VNNI dot products (llama.cpp's numerics; `quant_dot8.cpp`)."""
    return _require().quant_linear(x.contiguous(), packs, types, k, bias, int8)


def quantize_rows(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 kernel's activation quantisation: x (R, k) bf16 -> (quants int8 (R, chunks x 64),
    fp32 scales (R, chunks x 64 / block)) per block of 32 or 256 elements."""
    q, d = _require().quantize_rows(x.contiguous(), block)
    return q, d


def tile_pack(pack: torch.Tensor, qtype: int, k: int) -> torch.Tensor:
    """A packed matrix (O, row bytes) of type code `qtype` in the tile layout (O / 16, 16 x row
    bytes): `plait.runtime.quant.tiles.tile`, compiled."""
    return _require().tile_pack(pack.contiguous(), qtype, k)


def quant_rows(pack: torch.Tensor, qtype: int, k: int, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` (N,) of a packed weight, dequantised to fp32 (N, k)."""
    return _require().quant_rows(pack, qtype, k, ids)
