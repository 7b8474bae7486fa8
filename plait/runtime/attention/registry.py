"""The attention backends by name, and the one function that picks a step's path.

Backends (each a module of this package with a `BACKEND`):
  step_kernel     plait's step kernel, one call per layer (CPU with AVX512-BF16);
  segment_kernel  plait's segment kernel per read batch + the exact LSE merge (same CPUs);
  torch           torch's kernels per read batch + the same merge (any device);
  reference       float64 materialised views (the twin the others are tested against).
`Runner(model, store, attention=...)` takes one of these names, or "fast": the policy of
`choose_backend`, decided once per step, which is the only place that asks whether plait's kernels
run for attention. Adding a backend: one new module and one entry in `BACKENDS`.
"""

from __future__ import annotations

import torch

from plait.runtime import kernels
from plait.runtime.attention import reference, segment_kernel, step_kernel, torch_reads
from plait.runtime.attention.context import Backend
from plait.runtime.attention.step_kernel import STEP_KERNEL_MAX_ROWS

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (step_kernel.BACKEND, segment_kernel.BACKEND, torch_reads.BACKEND, reference.BACKEND)
}
FAST = "fast"
"""The default policy where plait's kernels run: the step kernel for every step (batch
invariance: a row's softmax runs over its segments in one order whatever the step holds); with
`kernels.batch_invariant()` off, the step kernel up to `STEP_KERNEL_MAX_ROWS` new tokens and the
segment kernel (per-read partials + LSE merge: other bits) above. Torch's kernels elsewhere."""


def names() -> tuple[str, ...]:
    """Every value `Runner(attention=...)` takes."""
    return (FAST, *BACKENDS)


def check_attention(
    attention: str, device: torch.device, dtype: torch.dtype, head_dim: int
) -> None:
    """ValueError, naming the choices or the reason, unless `attention` can run for a model of
    this device, dtype and head dim."""
    if attention == FAST:
        return
    if attention not in BACKENDS:
        raise ValueError(
            f"attention must be one of {', '.join(repr(n) for n in names())}, got {attention!r}"
        )
    why = BACKENDS[attention].unavailable(device, dtype, head_dim)
    if why:
        raise ValueError(
            f"attention={attention!r} cannot run here: {why}; use attention='fast', which picks "
            "a backend that can"
        )


def choose_backend(
    attention: str, rows: int, device: torch.device, dtype: torch.dtype, head_dim: int
) -> Backend:
    """The backend that runs a step of `rows` new tokens: the named one, or for "fast" the
    policy above (asked once per step)."""
    if attention != FAST:
        return BACKENDS[attention]
    if kernels.applies(device, dtype, head_dim):
        if kernels.batch_invariant() or rows <= STEP_KERNEL_MAX_ROWS:
            return BACKENDS["step_kernel"]
        return BACKENDS["segment_kernel"]
    return BACKENDS["torch"]
