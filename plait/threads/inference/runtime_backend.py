"""`EngineBackend`: the ThreadWeaver `CompletionBackend` on plait's engine (`plait.runtime.engine`).

One adapter for both places the orchestrator runs on plait's engine: a private engine stepped
inside `complete` (`EngineBackend.private`: the CLI, benchmarks) and the server's, reached through
its `EngineLoop.stream` (plait.serve.threads_ext). Per `complete(requests)` call (the threads of one block, or one sequential request) every request
is added to a private `Engine` at once and the engine steps until they all finish: the threads
decode as rows of one batch, and their common context is read from the engine's prefix cache
(64-token blocks by default; requests that arrive together prefill a missing shared block once).
Each request asks the engine to keep its finished sequence in the cache (`cache_output`): at the
join, the merged context continues thread 1's sequence, so its full blocks are cache hits (their
K/V copied, re-rotated, from the stream that computed them: no recompute) and threads 2..n are
re-encoded after it (they see the earlier threads, exactly the autoregressive context the
training data teaches); the next block's threads find the sequential part cached the same way.
Those copies were computed in another request's layout, so the log-probs of a call that reads
them can differ in the last bits from a fresh prefill (0.03 nats on the tiny bf16 test model).
`cache_output=False` keeps no finished sequence: every call prefills its context (the prompt
blocks still shared through the cache), and every call's log-probs are then exactly what
`plait.runtime.engine.scoring.sampler_logprobs` recomputes (RL: trainer = sampler, see
`plait.threads.training.sampler_gap`; tests/threads/training/test_trainer_exact.py).

`engine_request` / `completion` convert between the orchestrator's `CompletionRequest` /
`Completion` and the engine's `EngineRequest` / outputs (the contract of `backend_api`: a stop id
ends with "stop", an EOS id with "eos", "stop" wins). `script` (optional) forces the emitted tokens
(benchmarks: real forwards along scripted streams; `EngineRequest.forced_tokens`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from plait.runtime.engine import (
    Engine,
    EngineConfig,
    EngineRequest,
    EngineStats,
    SampleOutput,
    raise_for_error,
)
from plait.runtime.model import DecoderLM
from plait.runtime.sampling import SamplingParams
from plait.threads.inference.backend_api import Completion, CompletionRequest


def engine_request(
    req: CompletionRequest, forced: Sequence[int] = (), cache_output: bool = False
) -> EngineRequest:
    """The engine request for an orchestrator request (EOS ids become stop ids: the request's
    own EOS set, not the model's, ends it); `forced` tokens are emitted first."""
    sampling = SamplingParams(
        temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, seed=req.seed
    )
    max_tokens = req.max_tokens
    if forced:
        max_tokens = min(max_tokens, len(forced))
    stops = tuple(dict.fromkeys((*req.stop_token_ids, *req.eos_token_ids)))
    return EngineRequest(
        prompt=list(req.context), max_tokens=max_tokens, sampling=sampling,
        stop_token_ids=stops, ignore_eos=True, logprobs=0 if req.logprobs else None,
        forced_tokens=tuple(forced), cache_output=cache_output,
    )  # fmt: skip


def completion(
    req: CompletionRequest,
    outputs: Sequence[SampleOutput],
    latency_s: float = 0.0,
) -> Completion:
    """A request's completion from its sample's outputs (in order)."""
    tokens = [t for o in outputs for t in o.token_ids]
    last = tokens[-1] if tokens else None
    reason = (
        "stop" if last in req.stop_token_ids else "eos" if last in req.eos_token_ids else "length"
    )
    lps = [lp.logprob for o in outputs for lp in o.logprobs] if req.logprobs else None
    cached = outputs[0].cached_tokens if outputs else None
    return Completion(
        tokens=tokens, finish_reason=reason, logprobs=lps, cached_tokens=cached,  # type: ignore[arg-type]
        latency_s=latency_s,
    )  # fmt: skip


class EngineBackend:
    """The ThreadWeaver `CompletionBackend` on plait's engine (see the module docstring).

    Args:
        engine: the `Engine` the requests run on.
        stream: how async code reaches it: None = step it here, in `complete` (a private engine:
            `EngineBackend.private`); the server passes its `EngineLoop.stream` (the engine
            steps on the loop's thread, next to every other request).
        script: optional `request -> tokens` forcing what each stream emits (still one real
            forward per token; a stream ends at the script's end); None samples with the
            request's parameters.
        cache_output: keep each finished sequence in the prefix cache for the next call (the
            default; faster joins); False for log-probs a trainer can recompute exactly.
    """

    def __init__(
        self,
        engine: Engine,
        stream: Callable[[EngineRequest], AsyncIterator[Any]] | None = None,
        script: Callable[[CompletionRequest], list[int]] | None = None,
        cache_output: bool = True,
    ) -> None:
        self.engine, self.stream, self.script = engine, stream, script
        self.cache_output = cache_output
        self.calls = 0  # `complete` calls
        self.tokens = 0  # tokens generated (usage)

    @classmethod
    def private(
        cls,
        model: DecoderLM,
        attention: str = "fast",
        prefill_chunk: int = 512,
        script: Callable[[CompletionRequest], list[int]] | None = None,
        kv_budget_tokens: int = 16384,
        block_tokens: int = 64,
        cache_output: bool = True,
    ) -> EngineBackend:
        """A backend over a new private engine: `prefill_chunk` tokens per step (decode rows +
        prefill chunks), `kv_budget_tokens` KV slots (running requests + prefix cache; least
        recently used cached blocks are evicted beyond it), `block_tokens` per cache block;
        `cache_output` as in the class."""
        if prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {prefill_chunk}")
        config = EngineConfig(
            kv_budget_tokens=kv_budget_tokens, step_tokens=prefill_chunk, block_tokens=block_tokens
        )
        engine = Engine(model, config=config, attention=attention)
        return cls(engine, script=script, cache_output=cache_output)

    @property
    def stats(self) -> EngineStats:
        """The engine's counters (steps, prefilled / computed / kept tokens, ...)."""
        return self.engine.stats

    def reset(self) -> None:
        """Forget all cached K/V (e.g. between unrelated problems; a private engine only)."""
        self.engine.cache.evict(self.engine.cache.total_tokens())

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        if not requests:
            return []
        start = time.perf_counter()
        self.calls += 1
        limit = self.engine.context
        longest = max(len(r.context) for r in requests)
        if longest >= limit:
            raise ValueError(
                f"a request context has {longest} tokens but the model's context is {limit}; "
                "lower the orchestrator's total token budget"
            )
        ers = [engine_request(r, self._script(r), self.cache_output) for r in requests]
        if self.stream is None:
            outs = self._step(ers)
        else:
            outs = list(await asyncio.gather(*(self._collect(er) for er in ers)))
        took = time.perf_counter() - start
        done = [completion(r, o, took) for r, o in zip(requests, outs)]
        self.tokens += sum(len(d.tokens) for d in done)
        return done

    def _step(self, ers: list[EngineRequest]) -> list[list[SampleOutput]]:
        """Run `ers` on the private engine until they all finish."""
        outs: dict[str, list[SampleOutput]] = {er.request_id: [] for er in ers}
        try:
            for er in ers:
                self.engine.add(er)
            while self.engine.has_work:
                for o in self.engine.step():
                    raise_for_error(o)
                    if isinstance(o, SampleOutput) and o.request_id in outs:
                        outs[o.request_id].append(o)
        finally:  # an error (bad request, interrupted run) leaves nothing running
            for er in ers:
                self.engine.cancel(er.request_id)
        return [outs[er.request_id] for er in ers]

    async def _collect(self, er: EngineRequest) -> list[SampleOutput]:
        assert self.stream is not None
        return [o async for o in self.stream(er) if isinstance(o, SampleOutput)]

    def _script(self, req: CompletionRequest) -> list[int]:
        if self.script is None:
            return []
        script = list(self.script(req))
        if not script:
            raise ValueError("the script gave no tokens for a request; give at least one")
        return script
