"""What the engine is asked (`EngineRequest`) and what it answers (`SampleOutput`), as plain data.

A request is a prompt (token ids) with a budget, sampling, stop rules and `n` samples that share
the prompt's K/V. Every `Engine.step` returns the `SampleOutput`s of that step: new token ids (and
text, when the engine has a tokenizer), log-probs if asked, and a `finish_reason` on a sample's
last output: "stop" (EOS, a stop token id or a stop string), "length" (max_tokens or the model's
context), "abort" (cancelled) or "error" (the request failed inside the engine: `error` says how;
the other requests go on, see `plait.runtime.engine.isolation`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch

from plait.runtime.sampling import SamplingParams

_ids = itertools.count()


class CapacityError(ValueError):
    """A request larger than the engine could ever admit (KV budget, row limit)."""


class RequestError(RuntimeError):
    """A request failed inside the engine and its error output carries no exception."""


def next_request_id(prefix: str = "req") -> str:
    return f"{prefix}-{next(_ids)}"


@dataclass(slots=True, kw_only=True)
class EngineRequest:
    """One prompt to continue.

    `sampling.seed` seeds sample 0; sample i uses seed + i (None: i, as `Sampler`).
    `logprobs`: None = off; k >= 0 = the chosen token's log-prob plus the k most likely tokens'.
    Stop strings need an engine with a tokenizer; the text stops before the matched string.
    `forced_tokens`: every sample emits these first instead of sampling (one real forward per
    token; the stop rules apply to them; benchmarks replay scripted streams with it).
    `cache_output`: when a sample finishes, the full blocks of prompt + its tokens stay in the
    prefix cache (as SGLang keeps finished sequences), so a prompt that continues them (the next
    call of a multi-turn or ThreadWeaver run) reads their K/V instead of prefilling them.
    """

    prompt: list[int]
    max_tokens: int = 16
    sampling: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1
    stop_token_ids: tuple[int, ...] = ()
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    include_stop_str: bool = False  # keep a matched stop string / stop token's text in the text
    logprobs: int | None = None
    forced_tokens: tuple[int, ...] = ()
    cache_output: bool = False
    request_id: str = ""

    def __post_init__(self) -> None:
        if not self.prompt:
            raise ValueError("the prompt is empty; pass at least one token id (or non-empty text)")
        self.prompt = [int(t) for t in self.prompt]
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.logprobs is not None and self.logprobs < 0:
            raise ValueError(f"logprobs must be >= 0 (top alternatives), got {self.logprobs}")
        self.stop_token_ids = tuple(int(t) for t in self.stop_token_ids)
        self.forced_tokens = tuple(int(t) for t in self.forced_tokens)
        self.stop = tuple(s for s in self.stop if s)
        if not self.request_id:
            self.request_id = next_request_id()

    def seed(self, index: int) -> int:
        return (self.sampling.seed if self.sampling.seed is not None else 0) + index

    def check(self, context: int, vocab: int, has_tokenizer: bool) -> None:
        """ValueError naming the fix if this request cannot run on a model with this context
        length and vocabulary (and a tokenizer or not)."""
        if len(self.prompt) >= context:
            raise ValueError(
                f"the prompt has {len(self.prompt)} tokens but the model's context is "
                f"{context}; shorten the prompt"
            )
        if self.stop and not has_tokenizer:
            raise ValueError("stop strings need an engine with a tokenizer; pass stop token ids")
        if any(not 0 <= t < vocab for t in (*self.prompt, *self.forced_tokens)):
            raise ValueError(f"token ids must be in [0, {vocab}); got an id outside it")
        if self.seed(0) < -(2**63) or self.seed(self.n - 1) >= 2**64:
            raise ValueError(
                f"the seed {self.sampling.seed} (+ up to n-1) is outside a 64-bit integer; "
                "pass a seed in [-2**63, 2**63)"
            )


@dataclass(slots=True)
class TokenLogprob:
    """Log-prob of one generated token and of the most likely alternatives at that step."""

    token: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)

    @classmethod
    def of(cls, logp: torch.Tensor, token: int, top: int) -> TokenLogprob:
        """From a row of log-probs (V,): the token's and the `top` most likely ones."""
        alts: list[tuple[int, float]] = []
        if top:
            vals, idx = torch.topk(logp, top)
            alts = [(int(i), float(v)) for v, i in zip(vals, idx)]
        return cls(token, float(logp[token]), alts)


@dataclass(slots=True)
class SampleOutput:
    """What one sample of one request produced in one step."""

    request_id: str
    index: int  # sample index in 0..n-1
    token_ids: list[int]
    text: str = ""  # text delta (empty without a tokenizer)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None  # "stop" | "length" | "abort" | "error" on the last output
    stop_reason: int | str | None = None  # the stop token id or stop string that matched
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose K/V came from the prefix cache
    error: str | None = None  # finish_reason "error": what went wrong
    cause: BaseException | None = field(default=None, repr=False, compare=False)  # its exception

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass(slots=True)
class GroupOutput:
    """Events of a multi-stream request (see `plait.runtime.engine.groups`) in one step."""

    request_id: str
    events: list[object]
    finished: bool = False
    error: str | None = None
    cause: BaseException | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class EngineStats:
    steps: int = 0
    step_seconds: float = 0.0  # total time in `step` forwards (plus sampling)
    last_step_seconds: float = 0.0
    generated_tokens: int = 0
    prompt_tokens: int = 0  # prompt tokens of admitted requests
    prefilled_tokens: int = 0  # prompt tokens not cached at admission
    computed_prompt_tokens: int = 0  # prompt tokens run through the model (shared work once)
    finished_requests: int = 0
    cancelled_requests: int = 0
    failed_requests: int = 0  # ended by an error inside the engine (the others went on)
    kept_tokens: int = 0  # finished tokens whose K/V went into the prefix cache (cache_output)
    preemptions: int = 0  # requests or groups preempted (KV freed, recomputed when re-admitted)
    recomputed_tokens: int = 0  # generated tokens replayed after a preemption
    peak_running: int = 0  # most requests and groups running at once
