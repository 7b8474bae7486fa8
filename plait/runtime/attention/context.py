"""What the model needs from attention (`AttentionContext`) and what a backend is (`Backend`).

`DecoderLM` calls `ctx.attend(layer, q, k, v)` once per layer; the context knows where every
row sits (positions, masks, caches). Contexts of the runtime: the step backends of this package
(built per step from a `StepPlan`, see plait.runtime.attention.registry) and `DenseContext`
(explicit positions and mask, no cache). Other packages may bring their own (the packed-trie
training context of plait.threads): any object with this `attend` is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from plait.runtime.attention.plan import StepPlan
    from plait.runtime.rope import Rope
    from plait.runtime.segments import KVStore


class AttentionContext(Protocol):
    """What the model needs from an attention implementation."""

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (T, Hq, D), k/v (T, Hkv, D) before RoPE -> (T, Hq*D)."""
        ...


@dataclass(frozen=True, slots=True)
class Backend:
    """One way to run a planned step's attention over a `KVStore`.

    `context(store, rope, plan)` builds the backend's own tables from the plan (once per step;
    room for the new tokens already reserved) and returns the context every layer calls; it
    writes the new K/V into the store, the runner then advances the segments' lengths.
    `unavailable(device, dtype, head_dim)` says why the backend cannot run for such a model
    ('' when it can).
    """

    name: str
    summary: str
    context: Callable[[KVStore, Rope, StepPlan], AttentionContext]
    unavailable: Callable[[torch.device, torch.dtype, int], str]


def always_available(device: torch.device, dtype: torch.dtype, head_dim: int) -> str:
    """`Backend.unavailable` of backends made of torch ops only."""
    return ""
