"""plait's compiled CPU kernels, built on first use and cached; every one has a torch twin.

`segment_attention(q, k, v, limits)`: many query rows (workers x heads) over one KV segment with
log-sum-exp output, strided arena views, per-row key limits; 64-key blocks transposed once for
all rows (1.5-3x torch's CPU flash kernel on decode shapes). `step_attention(...)`: a step's
whole attention for one layer in one call (rotate and write the new keys, rotate each query per
segment read, one online softmax per row across its segments = the exact merge); twin: the
per-read backends of plait.runtime.attention.

`kernels.pointwise`: a layer's RMSNorm and SwiGLU product fused per row (same extension).
`skinny_linear(x, w, bias)` is `F.linear` for any row count with ONE summation order per output
fixed by the input width (a row gets the same bits alone or beside 511 others): few rows stream
each weight row once for all rows (~2x torch's GEMM for one row; 4 rows cost about what 1 costs),
many rows take register tiles with the same sums. Parity and bitwise row invariance:
tests/runtime/kernels/test_kernels.py.

Batch invariance (`batch_invariant()`, on by default; off with `plait --no-batch-invariant`,
`PLAIT_BATCH_INVARIANT=0` or `set_batch_invariant(False)`): every linear row goes through `skinny_linear` and every attention
step through the step kernel (plait.runtime.attention.registry). Off: rows above
`SKINNY_MAX_ROWS` take torch's GEMM and long steps the segment kernel (batch-dependent bits).

The extension is compiled with `torch.utils.cpp_extension` (a C++ compiler and `ninja`) into
`<plait cache>/kernels/<hash>/` when a CPU model loads (~80 s on 2 cores, once per machine and
source version). It is used only where it can run: Linux on x86 with AVX512F/BW and AVX512-BF16.
Anywhere else, or if the build fails (one warning that says why), plait uses `F.linear`.
`PLAIT_KERNELS=0` (read at import) or `set_enabled(False)` turns the kernels off.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import threading
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from plait.runtime.cache_dir import cache_root
from plait.runtime.kernels.build import build_or_explain

ENV = "PLAIT_KERNELS"
INVARIANT_ENV = "PLAIT_BATCH_INVARIANT"
SKINNY_MAX_ROWS = 28
"""Most rows on the weight-streaming path (`kManyRows` in skinny_linear.cpp), and with batch
invariance off the most sent to `skinny_linear` (crossover with torch's GEMM on the dev box:
benchmarks/results/kernels_cpu.json)."""

_SOURCES = [
    Path(__file__).with_name(n)
    for n in (
        "bindings.cpp",
        "skinny_linear.cpp",
        "segment_attention.cpp",
        "step_attention.cpp",
        "pointwise.cpp",
    )  # fmt: skip
]
_HEADERS = [Path(__file__).with_name("online_softmax.h")]  # hashed, not compiled on their own
_CFLAGS = ["-O3", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512bf16", "-fopenmp"]
_REQUIRED_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")
_lock = threading.Lock()


def _env_enabled(name: str = ENV) -> bool:
    return os.environ.get(name, "1").strip().lower() not in ("0", "false", "no", "off")


_enabled, _invariant = _env_enabled(), _env_enabled(INVARIANT_ENV)


def batch_invariant() -> bool:
    """True (the default): batch-invariant numerics where the kernels run (module docstring)."""
    return _invariant


def set_batch_invariant(on: bool) -> None:
    """Turn batch invariance on or off (off: faster prefill, bits that depend on the batch)."""
    global _invariant
    _invariant = bool(on)


def enabled() -> bool:
    """False when `PLAIT_KERNELS=0` was set at import or `set_enabled(False)` was called.
    (Not an environment lookup per call: `linear` asks on every layer.)"""
    return _enabled


def set_enabled(on: bool | None) -> None:
    """Turn the kernels on or off at runtime; None re-reads `PLAIT_KERNELS`."""
    global _enabled
    _enabled = _env_enabled() if on is None else bool(on)


@cache
def cpu_supported() -> tuple[bool, str]:
    """(supported, reason): the kernels need x86-64 Linux with AVX512F/BW/VL and AVX512-BF16."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return False, f"not x86-64 Linux ({sys.platform}, {platform.machine()})"
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError as e:
        return False, f"cannot read /proc/cpuinfo ({e})"
    missing = [f for f in _REQUIRED_FLAGS if f not in flags]
    if missing:
        return False, f"CPU lacks {', '.join(missing)}"
    return True, ""


def build_dir() -> Path:
    """Where the compiled extension lives: keyed by the source, flags, torch version and the
    source directory (two checkouts sharing one cache would otherwise rebuild each other's
    build files, silently, on every switch)."""
    h = hashlib.sha256(" ".join(_CFLAGS).encode() + torch.__version__.encode())
    h.update(str(Path(__file__).resolve().parent).encode())
    for src in _SOURCES + _HEADERS:
        h.update(src.read_bytes())
    key = h.hexdigest()[:16]
    return cache_root() / "kernels" / key


_module: ModuleType | None = None
_failed: str | None = None


def _load() -> ModuleType | None:
    """Build (once per machine) and import the extension; None (with one warning) on failure."""
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
            "plait_cpu_kernels", _SOURCES, build_dir(), _CFLAGS,
            f"plait: CPU kernels unavailable ({{}}); using torch's F.linear instead. Install a C++ "
            f"compiler and `ninja` to enable them, or set {ENV}=0 to silence this.",
        )  # fmt: skip
        return _module


def available() -> bool:
    """True when `skinny_linear` will run the compiled kernel (builds it if needed)."""
    return enabled() and _load() is not None


def unavailable_reason() -> str:
    """Why the kernels are off ('' when they are on)."""
    if not enabled():
        return f"{ENV}=0"
    _load()
    return _failed or ""


def why_not(device: torch.device, dtype: torch.dtype, head_dim: int | None = None) -> str:
    """Why plait's kernels cannot run on tensors of this device and dtype (for attention, of
    this head dim), '' when they can: CPU, bf16/fp32, head dim a multiple of 16 up to 128,
    enabled and built. Autograd is not considered (see `applies`)."""
    if device.type != "cpu":
        return f"plait's kernels run on CPUs only, not {device.type}"
    if dtype not in (torch.bfloat16, torch.float32):
        return f"plait's kernels take bf16 or fp32, not {dtype}"
    if head_dim is not None and (head_dim % 16 or head_dim > 128):
        return f"plait's attention kernels need a head dim that is a multiple of 16 up to 128, not {head_dim}"
    if not available():
        return f"plait's kernels are unavailable ({unavailable_reason()})"
    return ""


def applies(device: torch.device, dtype: torch.dtype, head_dim: int | None = None) -> bool:
    """Whether plait's kernels run on tensors of this device and dtype (and attention head dim):
    `why_not` has no objection and autograd is off (the kernels have no backward). The one place
    that decides it: `linear` asks through `use_skinny`; the attention path is chosen once per
    step from it (plait.runtime.attention.registry)."""
    return not torch.is_grad_enabled() and not why_not(device, dtype, head_dim)


def use_skinny(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear(x, weight)` should take the compiled path: 2-D, same dtypes, the kernels
    apply (`applies`), and batch invariance is on or the rows are few."""
    rows_ok = x.dim() == 2 and x.shape[0] >= 1 and (x.shape[0] <= SKINNY_MAX_ROWS or _invariant)
    return rows_ok and weight.dtype == x.dtype and applies(x.device, x.dtype)


def _require() -> ModuleType:
    """The built extension; RuntimeError with the reason when it is off or unavailable."""
    mod = _load() if enabled() else None
    if mod is None:
        raise RuntimeError(
            f"plait CPU kernels unavailable: {unavailable_reason()} (check `available()` first)"
        )
    return mod


def segment_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    limits: torch.Tensor | None = None,
    scale: float | None = None,
    out: torch.Tensor | None = None,
    lse: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (B, Hkv, R, D) over k, v (B, Hkv, L, D) (strided views allowed; last dim
    contiguous) with optional per-row last visible key `limits` (B, R) (-1: no key).

    Returns out (B, Hkv, R, D) in q's dtype and lse (B, Hkv, R) float32 (-inf, zero output for
    rows that see no key). bf16 or fp32; D a multiple of 16, at most 128. `out` / `lse`, if
    given, are views to write into (e.g. slices of one per-layer buffer; any strides, last dim
    of `out` contiguous) and are returned. The twin is
    `batched_attention(..., impl="sdpa"/"math")` in plait.runtime.attention.partials."""
    mod = _require()
    if q.stride(-1) != 1:
        q = q.contiguous()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    res = mod.segment_attention(q, k, v, limits, scale, out, lse)
    return res[0], res[1]


def step_attention(
    q: torch.Tensor,
    k_new: torch.Tensor,
    v_new: torch.Tensor,
    k_arena: torch.Tensor,
    v_arena: torch.Tensor,
    slots: torch.Tensor,
    key_cos: torch.Tensor,
    key_sin: torch.Tensor,
    reads: torch.Tensor,
    entry_rows: torch.Tensor,
    entry_limits: torch.Tensor,
    entry_cos: torch.Tensor,
    entry_sin: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """One layer's attention for one step over shared segments, in one call (source and layout:
    `step_attention.cpp`): rotates the new keys k_new (T, Hkv, D) by key_cos/key_sin (T, Rr) and
    writes them and v_new at arena `slots` (T,) of k_arena/v_arena (Hkv, S, D); then every query
    row of q (T, Hq, D) attends, with one online softmax, the segments it reads: `reads` (n, 4)
    int64 rows [first entry, end entry, base slot, visible keys]; per entry its query row
    `entry_rows` (N,), last visible key `entry_limits` (N,) and query rotation entry_cos/entry_sin
    (N, Rr). Returns (T, Hq, D) in q's dtype. Rotation tables float32, indices int64 (contiguous).
    The twin is the per-read backends' path with its log-sum-exp merge
    (plait.runtime.attention.per_read)."""
    mod = _require()
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return mod.step_attention(
        q,
        k_new,
        v_new,
        k_arena,
        v_arena,
        slots,
        key_cos,
        key_sin,
        reads,
        entry_rows,
        entry_limits,
        entry_cos,
        entry_sin,
        scale,
    )


def skinny_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`F.linear(x, weight, bias)` for x (R, I), weight (O, I) through the compiled kernel.

    Raises RuntimeError when the kernel is unavailable (check `available()` first)."""
    mod = _require()
    return mod.skinny_linear(
        x.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous()
    )
