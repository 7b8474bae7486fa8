"""Multi-stream requests: a request kind whose streams the request itself plans.

A Hogwild! problem (W workers over shared segments, a layout choosing each worker's view) or a
ThreadWeaver block (threads over a shared context) is more than n independent samples: it decides
every step which streams run, over which segments, and what their logits mean. Such a request
implements `StreamGroup`; the engine admits it under the same KV budget and row limit as plain
requests, puts its streams into the same `Runner.step` as everyone else's rows, and hands it back
its logits rows. The runtime knows nothing of Hogwild or threads: the adapters live above it
(plait/serve).

Protocol, per engine step: `plan(budget)` returns the group's `StreamInput`s for this step (its
own segments, allocated from `store` in `start`; an empty list = idle this step; prefill tokens
count against `budget`), then `advance(logits)` gets their last-token logits rows (S, V) in the
same order and returns events for the caller. When `done` is True the engine calls `release()`
(also on cancel) and the group must free every segment it allocated.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore


@runtime_checkable
class StreamGroup(Protocol):
    """A request that plans its own streams (see the module docstring)."""

    kv_tokens: int
    """Upper bound on the KV slots the group allocates over its life (admission)."""
    rows: int
    """Most streams the group runs in one step (admission against the row limit)."""
    instant: bool
    """The `Runner.step` visibility the group needs (`instant=True` is the default)."""

    def start(self, store: KVStore, runner: Runner) -> None:
        """Allocate segments (called once, when admitted)."""
        ...

    def plan(self, budget: int) -> list[StreamInput]:
        """This step's streams; at most `budget` tokens unless a single stream needs more."""
        ...

    def advance(self, logits: torch.Tensor) -> list[Any]:
        """Consume last-token logits (S, V) of the planned streams; return events."""
        ...

    @property
    def done(self) -> bool: ...

    def release(self) -> None:
        """Free every segment the group allocated."""
        ...
