"""The backend protocol the ThreadWeaver orchestrator drives, plus scripted backends for tests.

Contract (both backends implement it: plait's runtime and any OpenAI-compatible server):

- `CompletionBackend.complete(requests)` takes a batch of requests (the threads of one block, or a
  single sequential request) and returns one `Completion` per request, in the same order.
- Everything is token ids: `context` is the full prompt as ids, `Completion.tokens` the new ids.
- A completion ends at the first generated token in `stop_token_ids` (finish_reason "stop") or in
  `eos_token_ids` (finish_reason "eos"); that token IS included as the last element of `tokens`.
  Otherwise it ends after `max_tokens` tokens (finish_reason "length"). If a token is in both sets,
  "stop" wins.
- Sampling: `temperature == 0` means greedy. `seed` makes sampling reproducible per request.

`ScriptedBackend` replays scripted token lists (applying the stop rules above) and records every
request; `NextTokenBackend` decodes token by token with a deterministic function of the context.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "eos"]


@dataclass(slots=True, kw_only=True)
class CompletionRequest:
    """One backend call: continue `context` by at most `max_tokens` tokens."""

    context: list[int]  # full prompt as token ids (never re-tokenised)
    max_tokens: int  # hard cap on generated tokens, >= 1
    stop_token_ids: tuple[int, ...] = ()  # generation stops after emitting one of these
    eos_token_ids: tuple[int, ...] = ()  # end-of-sequence ids (finish_reason "eos")
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0  # nucleus sampling mass, in (0, 1]
    top_k: int = 0  # 0 = disabled
    seed: int | None = None  # per-request sampling seed
    logprobs: bool = False  # ask the backend for per-token log-probs (if it can)
    tag: str = ""  # free-form label for logs, e.g. "seq", "thread 2"

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(
                f"max_tokens must be >= 1, got {self.max_tokens}; do not send a request "
                "when no budget is left"
            )
        if not self.context:
            raise ValueError("context must hold at least one token id; pass the prompt ids")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        self.context = [int(t) for t in self.context]  # fails loudly on non-id input
        self.stop_token_ids = tuple(int(t) for t in self.stop_token_ids)
        self.eos_token_ids = tuple(int(t) for t in self.eos_token_ids)


@dataclass(slots=True, kw_only=True)
class Completion:
    """A backend's answer to one `CompletionRequest`."""

    tokens: list[int]  # generated ids; the stop/EOS token that ended it is the last one
    finish_reason: FinishReason
    # one per token in `tokens`, if requested and available (None: a token the server did not
    # report, e.g. a stop or EOS id the client appended)
    logprobs: list[float | None] | None = None
    cached_tokens: int | None = None  # prompt tokens served from a prefix cache, if known
    latency_s: float = 0.0  # wall-clock seconds the backend spent on this request (batch time)

    def __post_init__(self) -> None:
        if self.finish_reason not in ("stop", "length", "eos"):
            raise ValueError(
                f"finish_reason must be 'stop', 'length' or 'eos', got {self.finish_reason!r}"
            )
        if self.logprobs is not None and len(self.logprobs) != len(self.tokens):
            raise ValueError("logprobs must have one entry per generated token")


@runtime_checkable
class CompletionBackend(Protocol):
    """Anything that can complete a batch of token-id requests."""

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        """Complete every request; the result has the same length and order as `requests`."""
        ...


def apply_stop_rules(tokens: Sequence[int], request: CompletionRequest) -> Completion:
    """Cut a raw token stream the way every backend must (the contract in the module docstring)."""
    stops, eos = set(request.stop_token_ids), set(request.eos_token_ids)
    out: list[int] = []
    for tok in tokens[: request.max_tokens]:
        out.append(int(tok))
        if tok in stops:
            return Completion(tokens=out, finish_reason="stop")
        if tok in eos:
            return Completion(tokens=out, finish_reason="eos")
    return Completion(tokens=out, finish_reason="length")


@dataclass(slots=True, kw_only=True)
class ScriptedBackend:
    """Replays scripted token streams; records every request and batch.

    `script` is either a list of token lists consumed in request order, or a function
    `request -> token list`. The stop rules are applied to each scripted stream, so a script may
    run past a stop token (it is cut there) or be shorter than `max_tokens` (finish "length").
    """

    script: list[list[int]] | Callable[[CompletionRequest], list[int]]
    requests: list[CompletionRequest] = field(default_factory=list)  # every request seen
    batches: list[int] = field(default_factory=list)  # size of each `complete` call
    _next: int = 0

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        self.batches.append(len(requests))
        out = []
        for req in requests:
            start = time.perf_counter()
            self.requests.append(req)
            if callable(self.script):
                stream = list(self.script(req))
            else:
                if self._next >= len(self.script):
                    raise ValueError(
                        f"ScriptedBackend ran out of script after {self._next} requests; "
                        "add more scripted completions"
                    )
                stream = list(self.script[self._next])
                self._next += 1
            done = apply_stop_rules(stream, req)
            done.latency_s = time.perf_counter() - start
            out.append(done)
        return out


@dataclass(slots=True, kw_only=True)
class NextTokenBackend:
    """Decodes token by token: `next_token(context) -> id` (deterministic, like greedy decoding).

    With the same function, one long request and a chain of shorter requests produce the same
    tokens; the tests use this to check that the orchestrator changes nothing when no fork occurs.
    """

    next_token: Callable[[list[int]], int]
    requests: list[CompletionRequest] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        self.batches.append(len(requests))
        out = []
        for req in requests:
            self.requests.append(req)
            ctx = list(req.context)
            stream: list[int] = []
            for _ in range(req.max_tokens):
                tok = int(self.next_token(ctx))
                stream.append(tok)
                ctx.append(tok)
                if tok in req.stop_token_ids or tok in req.eos_token_ids:
                    break
            out.append(apply_stop_rules(stream, req))
        return out
