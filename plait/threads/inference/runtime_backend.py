"""A `CompletionEngine` on plait's runtime: all threads of a block decode as streams in one batch.

Per `complete(requests)` call (the threads of one block, or one sequential request):
  1) sync: the shared segment is brought to the requests' longest common prefix P. If it already
     holds a prefix of P, only the missing tokens are prefilled; before that, a stream segment of
     the previous batch whose tokens continue the shared segment (thread 1 at the join) is
     *moved* in (no recompute: its K/V were computed over exactly that context). Threads 2..n
     are re-encoded by the prefill, so they see the earlier threads, exactly the autoregressive
     context the training data teaches. A diverging prefix starts a fresh shared segment.
  2) decode: every request is a stream with view [shared, own segment]; its first step feeds
     its context suffix beyond P, then one sampled token per step. The runner attends the shared
     segment once per layer for all streams' queries (read once).
  3) stop rules of `plait.threads.inference.engine_api` (stop ids, EOS, max_tokens, model context).
`script` (optional) forces the emitted tokens (benchmarks: real forwards, scripted streams).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from plait.runtime.model import DecoderLM
from plait.runtime.presets import fresh_runner
from plait.runtime.runner import StreamInput
from plait.runtime.sampling import Sampler, SamplingParams
from plait.runtime.segments import Segment
from plait.threads.inference.engine_api import Completion, CompletionRequest


@dataclass(slots=True)
class EngineStats:
    """What the engine computed (for tests and benchmarks)."""

    calls: int = 0
    prefilled_tokens: int = 0  # context tokens run through the model by sync
    reused_tokens: int = 0  # context tokens already in the shared segment
    moved_tokens: int = 0  # tokens moved in from a previous stream segment (join, no recompute)
    suffix_tokens: int = 0  # per-stream context suffix tokens (headers)
    decode_steps: int = 0  # batched forward steps in decode loops
    generated_tokens: int = 0
    fresh_segments: int = 0  # times the shared prefix diverged and was rebuilt


def _finish(tok: int, req: CompletionRequest, n_out: int, cap: int) -> str | None:
    """Why a stream ends after emitting `tok` as its `n_out`-th token (None: it goes on)."""
    if tok in req.stop_token_ids:
        return "stop"
    if tok in req.eos_token_ids:
        return "eos"
    return "length" if n_out >= cap else None


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


@dataclass(kw_only=True)
class RuntimeEngine:
    """ThreadWeaver engine backend on `plait.runtime` (see the module docstring).

    Args:
        model: the decoder.
        attention: runner attention, "fast" or "reference".
        prefill_chunk: tokens per prefill step.
        script: optional `request -> tokens` forcing what each stream emits (still one real
            forward per token); None samples with the request's parameters.
    """

    model: DecoderLM
    attention: str = "fast"
    prefill_chunk: int = 512
    script: Callable[[CompletionRequest], list[int]] | None = None
    stats: EngineStats = field(default_factory=EngineStats)

    def __post_init__(self) -> None:
        if self.prefill_chunk < 1:
            raise ValueError(f"prefill_chunk must be >= 1, got {self.prefill_chunk}")
        self.runner = fresh_runner(self.model, self.attention)
        self.store = self.runner.store
        self.shared: Segment | None = None
        self._last: list[Segment] = []  # previous batch's stream segments
        self._last_base = (-1, -1)  # (shared segment id, its length) the streams were run over

    def reset(self) -> None:
        """Forget all cached K/V (e.g. between unrelated problems)."""
        for seg in [*self._last, *([self.shared] if self.shared else [])]:
            self.store.free(seg)
        self.shared, self._last = None, []

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        return self.complete_sync(requests)

    # ---------------------------------------------------------------- steps

    def _sync_shared(self, prefix: list[int]) -> int:
        """Make the shared segment hold exactly `prefix`; returns tokens served from cache."""
        shared = self.shared
        if shared is None or shared.tokens != prefix[: shared.length]:
            if shared is not None:
                self.store.free(shared)
                self.stats.fresh_segments += 1
            shared = self.shared = self.store.new_segment(max(len(prefix), 1) + 256, name="shared")
        cached = shared.length
        # join: move a previous stream (thread 1) in when it continues the shared tokens
        # NOTE: only valid if the shared segment is exactly what that stream attended to
        same_base = self._last_base == (shared.id, shared.length)
        for seg in self._last if same_base else []:
            n = seg.length
            if n and prefix[shared.length : shared.length + n] == seg.tokens:
                self.store.move(seg, shared)
                self.stats.moved_tokens += n
                cached += n
                break
        for seg in self._last:
            self.store.free(seg)
        self._last = []
        rest = prefix[shared.length :]
        if rest:
            self.runner.prefill(shared, rest, view=[shared], chunk=self.prefill_chunk)
            self.stats.prefilled_tokens += len(rest)
        self.stats.reused_tokens += cached
        return cached

    def complete_sync(self, requests: list[CompletionRequest]) -> list[Completion]:
        """Blocking version of `complete`."""
        if not requests:
            return []
        start = time.perf_counter()
        self.stats.calls += 1
        limit = self.model.config.max_position
        longest = max(len(r.context) for r in requests)
        if longest >= limit:
            raise ValueError(
                f"a request context has {longest} tokens but the model's context is {limit}; "
                "lower the orchestrator's total token budget"
            )
        ctxs = [list(r.context) for r in requests]
        # NOTE: keep >= 1 suffix token per stream: its last context token yields the first logits
        p = min(_common_prefix(ctxs), min(len(c) for c in ctxs) - 1)
        cached = self._sync_shared(ctxs[0][:p]) if p > 0 else self._fresh_empty()
        shared = self.shared
        assert shared is not None
        budgets = [min(r.max_tokens, limit - len(r.context)) for r in requests]
        segs = [
            self.store.new_segment(len(c) - p + b, name=f"stream{i}")
            for i, (c, b) in enumerate(zip(ctxs, budgets))
        ]
        views = [[shared, s] if shared.length else [s] for s in segs]
        sampler = Sampler(
            [
                SamplingParams(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p, seed=r.seed)
                for r in requests
            ]
        )
        scripts = [self.script(r) for r in requests] if self.script is not None else None
        out: list[list[int]] = [[] for _ in requests]
        lps: list[list[float]] = [[] for _ in requests]
        reasons: list[str | None] = [None] * len(requests)
        feed = {i: c[p:] for i, c in enumerate(ctxs)}
        self.stats.suffix_tokens += sum(len(f) for f in feed.values())
        while feed:
            # 1) one batched forward over every live stream's new tokens
            active = sorted(feed)
            logits = self.runner.step([StreamInput(feed[i], views[i], segs[i]) for i in active])
            assert isinstance(logits, torch.Tensor)  # (S, V): all_logits=False
            self.stats.decode_steps += 1
            # 2) pick the next token per stream (scripted or sampled)
            if scripts is None:
                picks = sampler(logits, active).tolist()
            else:
                picks = [self._scripted(scripts[i], len(out[i])) for i in active]
            feed = {}
            for row, (i, tok) in enumerate(zip(active, picks)):
                r = requests[i]
                out[i].append(tok)
                if r.logprobs:
                    lps[i].append(float(torch.log_softmax(logits[row].float(), -1)[tok]))
                # 3) stop rules ("stop" wins over "eos", then the length budget)
                cap = budgets[i] if scripts is None else min(budgets[i], len(scripts[i]))
                reasons[i] = _finish(tok, r, len(out[i]), cap)
                if reasons[i] is None:
                    feed[i] = [tok]
        self.stats.generated_tokens += sum(len(o) for o in out)
        self._last = segs
        self._last_base = (shared.id, shared.length)
        took = time.perf_counter() - start
        return [
            Completion(
                tokens=o,
                finish_reason=reason,  # type: ignore[arg-type]
                logprobs=lp if r.logprobs else None,
                cached_tokens=cached,
                latency_s=took,
            )
            for o, reason, lp, r in zip(out, reasons, lps, requests)
        ]

    def _fresh_empty(self) -> int:
        for seg in self._last:
            self.store.free(seg)
        self._last = []
        if self.shared is not None:
            self.store.free(self.shared)
        self.shared = self.store.new_segment(1, name="shared")
        return 0

    @staticmethod
    def _scripted(script: list[int], k: int) -> int:
        if k >= len(script):
            raise ValueError(f"the script has only {len(script)} tokens; give at least {k + 1}")
        return int(script[k])
