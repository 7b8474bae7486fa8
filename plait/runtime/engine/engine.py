"""The engine: continuous batching of every request over one runner, one KV pool, one prefix cache.

    engine = Engine(lm.model, lm.tokenizer, EngineConfig(kv_budget_tokens=16384))
    rid = engine.add(EngineRequest(prompt=ids, max_tokens=64, n=2))
    while engine.has_work:
        for out in engine.step(): ...          # SampleOutput / GroupOutput of this step
    engine.cancel(rid)                         # frees the request's segments at once

`step()` = admit waiting requests (scheduler), plan the step (decode rows, group streams, prefill
chunks under the token budget) and fit its KV growth into the budget, preempting the newest
requests if needed (memory), one `Runner.step` over all of it, then sample, apply stop rules and
free what finished. Requests join and leave at any step. A request's view is fixed by its prompt
(`prefix_cache`) and, where plait's kernels run, its bits are batch invariant (tokens, samples,
log-probs alone == in any batch: tests/runtime/test_invariance.py). Whatever goes wrong for one
request ends it with an error output and frees its KV; the others go on (`isolation`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import torch

from plait.runtime.engine import isolation
from plait.runtime.engine.detokenize import stop_rules
from plait.runtime.engine.groups import StreamGroup
from plait.runtime.engine.kv_pool import KVPool
from plait.runtime.engine.memory import count_work, fit_step
from plait.runtime.engine.prefix_cache import PrefixCache
from plait.runtime.engine.requests import (
    CapacityError,
    EngineRequest,
    EngineStats,
    GroupOutput,
    SampleOutput,
    TokenLogprob,
    next_request_id,
)
from plait.runtime.engine.scheduler import EngineConfig, Scheduler, Work
from plait.runtime.engine.states import GroupState, RequestState, Sample
from plait.runtime.model import DecoderLM
from plait.runtime.runner import Runner

Output = SampleOutput | GroupOutput


class Engine:
    """Continuous-batching engine (see the module docstring).

    Args:
        model: the decoder.
        tokenizer: optional; needed for text outputs and stop strings.
        config: limits (KV budget, row limit, step token budget, block size).
        eos_token_ids: ids that end a sample (default: the model config's).
        attention: runner attention, "fast" or "reference".
        runner: step this runner (over a `KVPool`) instead of a new one (`attention` unused).
    """

    def __init__(
        self,
        model: DecoderLM,
        tokenizer: Any = None,
        config: EngineConfig | None = None,
        eos_token_ids: Iterable[int] | None = None,
        attention: str = "fast",
        runner: Runner | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.config = config or EngineConfig()
        c = self.config
        store = runner.store if runner is not None else KVPool(
            model.config, model.dtype, model.device, model.rope, c.kv_budget_tokens, c.block_tokens
        )  # fmt: skip
        if not isinstance(store, KVPool):
            raise ValueError("the engine's runner must run over a KVPool; build it with one")
        self.store, self.runner = store, runner or Runner(model, store, attention=attention)
        self.cache = PrefixCache(self.store, c.block_tokens)
        self.scheduler = Scheduler(c, self.cache, self.store)
        ids = model.config.eos_token_ids if eos_token_ids is None else eos_token_ids
        self.eos = frozenset(int(t) for t in ids)
        self.context = model.config.max_position
        self.stats = EngineStats()
        self._states: dict[str, RequestState | GroupState] = {}

    # ------------------------------------------------------------------ requests

    def add(self, request: EngineRequest) -> str:
        """Queue a request; returns its id. Raises ValueError if it can never run."""
        if request.request_id in self._states:
            raise ValueError(f"request id {request.request_id!r} is already in use")
        request.check(self.context, self.model.config.vocab_size, self.tokenizer is not None)
        budget = min(request.max_tokens, self.context - len(request.prompt))
        self.scheduler.check_fits(request, budget)
        st = RequestState(request, budget)
        self._states[request.request_id] = st
        self.scheduler.waiting.append(st)
        return request.request_id

    def add_group(self, group: StreamGroup, request_id: str = "") -> str:
        """Queue a multi-stream request (`plait.runtime.engine.groups`); returns its id."""
        c = self.config
        if group.kv_tokens > c.kv_budget_tokens or group.rows > c.max_rows:
            raise CapacityError(
                f"the request needs {group.kv_tokens} KV slots and {group.rows} rows but the "
                f"engine has {c.kv_budget_tokens} and {c.max_rows}; make it smaller"
            )
        rid = request_id or next_request_id("group")
        st = GroupState(rid, isolation.GuardedGroup(group))
        self._states[rid] = st
        self.scheduler.waiting.append(st)
        return rid

    def cancel(self, request_id: str) -> bool:
        """Drop a request wherever it is and free its segments now; False if unknown/finished."""
        st = self._states.pop(request_id, None)
        if st is None:
            return False
        self._free(st)
        self.stats.cancelled_requests += 1
        return True

    @property
    def has_work(self) -> bool:
        return bool(self.scheduler.waiting or self.scheduler.running)

    def active(self, request_id: str) -> bool:
        """Whether a request is waiting or running (not finished, not cancelled)."""
        return request_id in self._states

    def num_running(self) -> int:
        return len(self.scheduler.running)

    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    def request_kv_tokens(self) -> int:
        """KV slots held for running requests (private segments, held cache blocks, groups);
        0 when idle (the prefix cache's unheld blocks stay cached and are not counted)."""
        return self.store.held - self.cache.total_tokens() + self.cache.held_tokens()

    # ------------------------------------------------------------------ step

    def _admit(self) -> list[Output]:
        sched, failed = self.scheduler, []
        while sched.waiting:
            st = sched.waiting[0]
            try:
                if not sched.try_admit(st):
                    break
                sched.running.append(sched.waiting.popleft())
                self.stats.peak_running = max(self.stats.peak_running, len(sched.running))
                if isinstance(st, GroupState):
                    st.group.start(self.store, self.runner)
                else:
                    first, n = not st.admitted, len(st.request.prompt)
                    sched.start(st, self.store, self.tokenizer)
                    self.stats.prompt_tokens += n * first
                    self.stats.prefilled_tokens += (n - st.cached_tokens) * first
            except Exception as exc:  # noqa: BLE001 - this request fails, the queue goes on
                failed += self._finish(st, exc)
        return failed

    def _preempt(self, st: RequestState | GroupState) -> None:  # memory.fit_step's victim
        self._free(st)
        self.scheduler.requeue(st)
        self.stats.preemptions += 1

    @torch.inference_mode()
    def step(self) -> list[Output]:
        """Admit, run one batched forward, sample; returns this step's outputs."""
        outputs = self._admit()
        plan = fit_step(self.scheduler, self.store, self._preempt)
        for group, error in isolation.failed_plans(self.scheduler.running):
            outputs += self._finish(group, error)
        start = time.perf_counter()
        logits, work = isolation.forward(
            self.runner, plan.work, plan.instant, self._finish, outputs
        )
        if logits is None:  # (S, V) last-token logits of `work`
            return outputs
        count_work(work, self.stats)
        group_rows: dict[int, list[int]] = {}
        # greedy picks of every row at once (first maximum, as `greedy_argmax`): one reduction
        # over (S, V) instead of a filtered copy of each row
        plain = any(w.kind in ("decode", "prefill") for w in work)
        picks = logits.argmax(-1).tolist() if plain else []
        failed: set[int] = set()
        for row, w in enumerate(work):
            if w.kind == "group":
                group_rows.setdefault(id(w.state), []).append(row)
            elif (w.kind == "decode" or w.last) and id(w.state) not in failed:
                assert isinstance(w.state, RequestState)
                try:
                    outputs.extend(self._sample(w, logits[row], picks[row]))
                except Exception as exc:  # noqa: BLE001 - this request fails, the rows go on
                    failed.add(id(w.state))
                    outputs += self._finish(w.state, exc)
        for st in list(self.scheduler.running):
            if isinstance(st, GroupState) and id(st) in group_rows:
                outputs.append(self._advance_group(st, logits[group_rows[id(st)]]))
        self.stats.last_step_seconds = took = time.perf_counter() - start
        self.stats.steps += 1
        self.stats.step_seconds += took
        return outputs

    def _advance_group(self, st: GroupState, rows: torch.Tensor) -> GroupOutput:
        try:
            events = st.group.advance(rows)
        except Exception as exc:  # noqa: BLE001 - a failing group must not stop the others
            return self._finish(st, exc)[0]  # type: ignore[return-value]
        if done := st.group.done:
            self._finish(st)
        return GroupOutput(st.request_id, st.deliver(events), finished=done)

    def _sample(self, w: Work, row: torch.Tensor, greedy: int) -> list[SampleOutput]:
        """Pick the next token of one sample (decode) or of every sample (end of prefill);
        `greedy` is the row's argmax (used by greedy samples without suppressed tokens)."""
        st = w.state
        assert isinstance(st, RequestState)
        req = st.request
        samples = [w.sample] if w.sample is not None else st.samples
        logp = torch.log_softmax(row.float(), -1) if req.logprobs is not None else None
        outs = []
        for s in samples:
            assert s is not None
            p = s.sampler.params[0]
            plain = p.greedy and not p.suppress_tokens
            at = len(s.generated)  # the output position: the draw's seed (sampling.draw_seed)
            if at < len(req.forced_tokens):
                tok = req.forced_tokens[at]
            else:
                tok = greedy if plain else int(s.sampler(row[None], positions=[at])[0])
            lps = [TokenLogprob.of(logp, tok, req.logprobs or 0)] if logp is not None else []
            outs.append(self._emit(st, s, tok, lps))
        if all(s.finish is not None for s in st.samples):
            self._finish(st)
        return outs

    def _emit(self, st: RequestState, s: Sample, tok: int, lps: list[TokenLogprob]) -> SampleOutput:
        """Record a token and apply the stop rules (stop id, EOS, stop string, length)."""
        req = st.request
        s.generated.append(tok)
        self.stats.generated_tokens += 1
        text, reason, stop = stop_rules(req, s.text, tok, len(s.generated) >= s.budget, self.eos)
        if reason is None:
            s.feed = tok
        else:
            s.feed, s.finish = None, reason
            if req.cache_output:
                self.stats.kept_tokens += self.scheduler.keep_output(st, s)
            self.store.free(s.segment)
        return SampleOutput(
            req.request_id, s.index, [tok], text, lps, reason, stop,
            len(req.prompt), st.cached_tokens,
        )  # fmt: skip

    def _finish(
        self, st: RequestState | GroupState, exc: BaseException | None = None
    ) -> list[Output]:
        """A request ends, done or failed with `exc` (then: its error outputs); frees its KV."""
        outs = [] if exc is None else isolation.failure_outputs(st, exc)
        rid = st.request_id if isinstance(st, GroupState) else st.request.request_id
        self._states.pop(rid, None)
        self._free(st)
        self.stats.finished_requests += exc is None
        self.stats.failed_requests += exc is not None
        return outs

    def _free(self, st: RequestState | GroupState) -> None:
        for queue in (self.scheduler.running, self.scheduler.waiting):
            if st in queue:
                queue.remove(st)
        if isinstance(st, GroupState):
            st.group.release()
            return
        for s in st.samples:
            self.store.free(s.segment)
        if st.tail is not None:
            self.store.free(st.tail)
        self.cache.release(st.path)
        st.path, st.tail = [], None

    # ------------------------------------------------------------------ convenience

    def generate(self, requests: list[EngineRequest]) -> list[list[list[int]]]:
        """Run requests to the end together; token ids per request, per sample."""
        ids = [self.add(r) for r in requests]
        out: dict[str, list[list[int]]] = {
            rid: [[] for _ in range(r.n)] for rid, r in zip(ids, requests)
        }
        while self.has_work:
            for o in self.step():
                isolation.raise_for_error(o)
                if isinstance(o, SampleOutput) and o.request_id in out:
                    out[o.request_id][o.index].extend(o.token_ids)
        return [out[rid] for rid in ids]
