"""What the scheduler keeps per request: a request's state (its cache path, private segments and
samples) and a group's, as plain data. A sample's tokens, text stream and sampler state live here
and outlive its KV: a preempted request keeps them and replays its tokens when re-admitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.runtime.engine.detokenize import TextStream
from plait.runtime.engine.groups import StreamGroup
from plait.runtime.engine.prefix_cache import CacheBlock
from plait.runtime.engine.requests import EngineRequest, TokenLogprob
from plait.runtime.sampling import Sampler
from plait.runtime.segments import Segment


@dataclass(slots=True, eq=False)
class Sample:
    """One of a request's n continuations."""

    index: int
    segment: Segment
    budget: int  # max new tokens
    sampler: Sampler
    text: TextStream | None
    generated: list[int] = field(default_factory=list)
    feed: int | None = None  # token to run next step
    finish: str | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    @property
    def replay(self) -> list[int]:
        """Generated tokens to write into the segment before decoding (after a preemption)."""
        if self.feed is None:
            return []
        return self.generated[self.segment.length : len(self.generated) - 1]


@dataclass(slots=True, eq=False)
class RequestState:
    """A running (or waiting) request: its path in the prefix cache and private segments."""

    request: EngineRequest
    budget: int  # max_tokens clamped to the context
    path: list[CacheBlock] = field(default_factory=list)
    tail: Segment | None = None
    samples: list[Sample] = field(default_factory=list)
    cached_tokens: int = 0
    tail_start: int = 0  # prompt index where the tail begins (len(path) * B)
    admitted: bool = False  # admitted once (a preempted request is re-admitted)

    @property
    def tail_tokens(self) -> list[int]:
        return self.request.prompt[self.tail_start :]

    @property
    def prefilled(self) -> bool:
        return self.tail is not None and self.tail.length == len(self.tail_tokens)

    @property
    def ready(self) -> bool:
        """Prompt prefilled and every sample's tokens replayed: only decoding left."""
        return self.prefilled and not any(s.replay for s in self.samples)

    def view(self) -> list[Segment]:
        assert self.tail is not None
        return [*(b.segment for b in self.path), self.tail]


@dataclass(slots=True, eq=False)
class GroupState:
    request_id: str
    group: StreamGroup
    error: str | None = None
    emitted: int = 0  # events delivered
    skip: int = 0  # events of a restarted group's replay already delivered before

    def deliver(self, events: list[Any]) -> list[Any]:
        """The events of this step not delivered before (a restarted group replays them)."""
        drop = min(self.skip, len(events))
        self.skip -= drop
        self.emitted += len(events) - drop
        return events[drop:]
