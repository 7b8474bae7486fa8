"""The scheduler: admission (KV budget, row limit, FIFO) and the plan of each step, as data.

Admission is by what a request needs now: its prompt path's missing blocks (B slots each), a
private tail segment for the prompt tokens after its last full block, and one growth unit per
sample (its segment grows as tokens are written: `memory.py`); a group needs what its `start`
allocates (`kv_start_tokens`, else its bound `kv_tokens`). It is admitted when that, plus a
watermark of free KV kept for running sequences to grow into (`kv_watermark`; none when nothing
runs), fits the KV budget (after evicting cached blocks nobody holds) and its rows fit the row
limit; otherwise it waits, and nothing behind it is admitted (FIFO). One that could not fit even
alone at its worst case (prompt + n x max_tokens) is refused at `add`. A preempted request
(`memory.py`) waits at the front of the queue with its samples' tokens and sampler states; once
re-admitted it prefills its prompt again (what the prefix cache still holds is read, not
computed) and then replays each sample's generated tokens into a new segment (work "replay":
no output) before decoding on.

Plan of a step, under `step_tokens`: 1) one token for every sample that is decoding; 2) every
running group's streams; 3) prefill pieces in admission order: each missing block of a request's
path, then its tail, chunked to what the budget has left. A block that another request is filling
in this step is waited for (requests that arrive together prefill a shared prompt once). A request
may fill several of its own pieces in one step (each reads the ones before it: `instant`
visibility); if a group needs `instant=False`, each request fills one piece per step.

`keep_output`: a finished sample of a `cache_output` request leaves its full blocks in the prefix
cache (within the KV budget, evicting older unheld blocks first).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Literal

from plait.runtime.engine.detokenize import TextStream
from plait.runtime.engine.kv_pool import KVPool, round_up
from plait.runtime.engine.prefix_cache import PrefixCache
from plait.runtime.engine.requests import CapacityError, EngineRequest
from plait.runtime.engine.states import GroupState, RequestState, Sample
from plait.runtime.runner import StreamInput
from plait.runtime.sampling import Sampler
from plait.runtime.segments import KVStore, Segment


@dataclass(slots=True, kw_only=True)
class EngineConfig:
    """Limits of one engine."""

    kv_budget_tokens: int = 32768  # KV slots for all requests and the prefix cache
    max_rows: int = 64  # samples (and group streams) decoding at once
    step_tokens: int = 512  # tokens per forward step (decode rows + prefill chunks)
    block_tokens: int = 64  # prefix-cache block size and the KV growth unit
    kv_watermark: float = 0.02  # share of the budget admission leaves free for growth

    def __post_init__(self) -> None:
        for name in ("kv_budget_tokens", "max_rows", "step_tokens", "block_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.kv_watermark < 1.0:
            raise ValueError(f"kv_watermark must be in [0, 1), got {self.kv_watermark}")


@dataclass(slots=True)
class Work:
    """One stream of a step."""

    kind: Literal["decode", "prefill", "replay", "group"]
    state: RequestState | GroupState
    input: StreamInput
    sample: Sample | None = None  # decode, replay
    last: bool = False  # prefill: completes the prompt (its logits start every sample)


@dataclass(slots=True)
class SchedulerOutput:
    work: list[Work]
    instant: bool
    tokens: int


class Scheduler:
    """Waiting queue, running set, admission and step plans (see the module docstring)."""

    def __init__(self, config: EngineConfig, cache: PrefixCache, pool: KVPool) -> None:
        self.config, self.cache, self.pool = config, cache, pool
        self.waiting: deque[RequestState | GroupState] = deque()
        self.running: list[RequestState | GroupState] = []

    # ------------------------------------------------------------------ admission

    def tail_need(self, req: EngineRequest) -> int:
        return len(req.prompt) - self.cache.cached_blocks(req.prompt) * self.cache.block

    def sample_capacity(self, st: RequestState, generated: int) -> int:
        """Slots a sample's segment starts with: its fed tokens plus room to grow (a unit)."""
        return min(round_up(generated + 1, self.config.block_tokens), max(st.budget, 1))

    def need_now(self, st: RequestState) -> int:
        """Private slots a request takes when (re-)admitted: tail + each live sample's segment."""
        if not st.samples:
            return self.tail_need(st.request) + st.request.n * self.sample_capacity(st, 0)
        live = [s for s in st.samples if s.finish is None]
        return self.tail_need(st.request) + sum(
            self.sample_capacity(st, len(s.generated)) for s in live
        )

    def check_fits(self, req: EngineRequest, budget: int) -> None:
        """Refuse a request that could never run to its end (alone, with an empty cache)."""
        c = self.config
        need = len(req.prompt) + req.n * budget
        if need > c.kv_budget_tokens:
            raise CapacityError(
                f"the request needs {need} KV slots (prompt {len(req.prompt)} + n={req.n} x "
                f"{budget} new tokens) but the engine's KV budget is {c.kv_budget_tokens}; "
                "lower max_tokens or n, shorten the prompt, or raise the KV budget"
            )
        if req.n > c.max_rows:
            raise CapacityError(
                f"n={req.n} samples exceed the engine's row limit of {c.max_rows}; lower n"
            )

    def used(self) -> tuple[int, int]:
        """(KV slots held by running requests, groups and the cache; rows in use)."""
        rows = 0
        for st in self.running:
            rows += st.group.rows if isinstance(st, GroupState) else st.request.n
        return self.pool.held, rows

    def watermark(self) -> int:
        """Free slots admission leaves for running sequences to grow into."""
        return int(self.config.kv_watermark * self.config.kv_budget_tokens) if self.running else 0

    def try_admit(self, st: RequestState | GroupState) -> bool:
        """Whether `st` fits now; if so, evict what it needs and hold its cache path. With
        nothing running the head of the queue is admitted whatever the pool holds (the pool may
        be shared with another engine; `add` checked that it fits alone): no deadlock."""
        c, cache = self.config, self.cache
        slots, rows = self.used()
        if isinstance(st, GroupState):
            g = st.group
            need, keep, new_rows = getattr(g, "kv_start_tokens", g.kv_tokens), [], g.rows
        else:
            req = st.request
            keep = cache.lookup(req.prompt)
            missing = cache.cached_blocks(req.prompt) - len(keep)
            need = missing * cache.block + self.need_now(st)
            new_rows = req.n
        if rows + new_rows > c.max_rows:
            return False
        excess = slots + need + self.watermark() - c.kv_budget_tokens
        if excess > 0 and excess > cache.evictable_tokens(keep) and self.running:
            return False
        if isinstance(st, RequestState):
            if not st.admitted:
                st.cached_tokens = sum(cache.block for b in keep if b.ready)
            st.path = cache.acquire(st.request.prompt)  # pins `keep` before evicting
            st.tail_start = len(st.path) * cache.block
        if excess > 0:
            cache.evict(excess)
        if isinstance(st, RequestState):
            for i, node in enumerate(st.path):  # new blocks may start with a kept partial
                cache.reuse(
                    st.path[i - 1] if i else None, node.segment, node.tokens, len(node.tokens)
                )
        return True

    def requeue(self, st: RequestState | GroupState) -> None:
        """Queue a preempted request or group first (it was admitted before all waiting ones)."""
        if isinstance(st, GroupState):
            st.skip = st.emitted  # its replay re-produces what was delivered
        self.waiting.appendleft(st)

    def start(self, st: RequestState, store: KVStore, tokenizer: Any) -> None:
        """Allocate an admitted request's tail and sample segments (a unit each, or room for a
        preempted sample's tokens); one sampler per sample, kept across preemptions."""
        req = st.request
        st.tail = store.new_segment(len(st.tail_tokens), name=f"{req.request_id}/prompt")
        last = st.path[-1] if st.path else None  # its last token is computed: it gives logits
        self.cache.reuse(last, st.tail, st.tail_tokens, len(st.tail_tokens) - 1)
        for s in st.samples:  # re-admitted after a preemption
            if s.finish is None:
                cap = self.sample_capacity(st, len(s.generated))
                s.segment = store.new_segment(cap, name=f"{req.request_id}/{s.index}")
        for i in range(req.n if not st.samples else 0):  # what may fail first, then the segment
            sampler = Sampler([replace(req.sampling, seed=req.seed(i))])
            text = None
            if tokenizer is not None:
                text = TextStream(tokenizer, req.stop, req.include_stop_str)
            seg = store.new_segment(self.sample_capacity(st, 0), name=f"{req.request_id}/{i}")
            st.samples.append(Sample(i, seg, st.budget, sampler, text))  # (freed with the state)
        st.admitted = True

    def keep_output(self, st: RequestState, s: Sample) -> int:
        """Put prompt + a finished sample's fed tokens into the prefix cache (`cache_output`):
        as many blocks as the KV budget holds after evicting older unheld ones; returns the
        tokens kept."""
        req, cache, b = st.request, self.cache, self.cache.block
        tokens = [*req.prompt, *s.segment.tokens]  # the last token was never fed: no K/V
        want = (-(-len(tokens) // b) - len(st.path)) * b  # full blocks and the partial one
        room = self.config.kv_budget_tokens - self.pool.held
        if want > room:
            room += cache.evict(want - room)
        assert st.tail is not None
        sources = [(st.tail_start, st.tail), (len(req.prompt), s.segment)]
        return cache.keep(st.path, tokens, sources, max(room, 0) // b)

    # ------------------------------------------------------------------ plan

    def plan(self) -> SchedulerOutput:
        budget = self.config.step_tokens
        work: list[Work] = []
        groups = [st for st in self.running if isinstance(st, GroupState)]
        instant = all(g.group.instant for g in groups)
        requests = [st for st in self.running if isinstance(st, RequestState)]
        for st in requests:
            for s in st.samples if st.prefilled else ():
                if s.feed is not None and not s.replay:
                    inp = StreamInput([s.feed], [*st.view(), s.segment], s.segment)
                    work.append(Work("decode", st, inp, sample=s))
                    budget -= 1
        for g in groups:
            for inp in g.group.plan(max(budget, 0)):
                work.append(Work("group", g, inp))
                budget -= len(inp.tokens)
        writing: set[int] = set()
        for st in requests:
            if budget <= 0:
                break
            if not st.ready:
                budget = self._prefill(st, budget, writing, instant, work)
        return SchedulerOutput(work, instant, self.config.step_tokens - budget)

    def _prefill(
        self, st: RequestState, budget: int, writing: set[int], instant: bool, work: list[Work]
    ) -> int:
        """Append the request's next prefill (then replay) pieces to `work`; returns the budget
        left."""
        view = st.view()
        pieces: list[tuple[Segment, list[int], list[Segment], Sample | None]] = [
            (b.segment, list(b.tokens), view[: i + 1], None) for i, b in enumerate(st.path)
        ]  # (segment, the tokens it holds when done, view, the sample it replays)
        assert st.tail is not None
        pieces.append((st.tail, st.tail_tokens, view, None))
        for s in st.samples:
            if s.replay:
                pieces.append((s.segment, s.generated[:-1], [*view, s.segment], s))
        fresh = not any(s.generated for s in st.samples)
        for seg, tokens, seen, sample in pieces:
            if seg.length == len(tokens):
                continue
            if id(seg) in writing or budget <= 0:
                return budget  # filled by another request this step / no budget left
            take = tokens[seg.length : seg.length + budget]
            complete = seg.length + len(take) == len(tokens)
            last = complete and seg is st.tail and fresh
            kind: Literal["prefill", "replay"] = "prefill" if sample is None else "replay"
            inp = StreamInput(take, seen, seg)
            work.append(Work(kind, st, inp, sample=sample, last=last))
            writing.add(id(seg))
            budget -= len(take)
            if not complete or not instant:
                return budget
        return budget
