"""The scheduler: admission (KV budget, row limit, FIFO) and the plan of each step, as data.

Admission: a request reserves its prompt path's missing blocks (B slots each), a private tail
segment for the prompt tokens after its last full block, and one segment of `max_tokens` slots
per sample; a group reserves its declared `kv_tokens`. It is admitted when that fits the KV budget
(after evicting cached blocks nobody holds) and its rows fit the row limit; otherwise it waits,
and nothing behind it is admitted (FIFO). One that could not fit even alone is refused at `add`.

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
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from plait.runtime.engine.detokenize import TextStream
from plait.runtime.engine.groups import StreamGroup
from plait.runtime.engine.prefix_cache import CacheBlock, PrefixCache
from plait.runtime.engine.requests import CapacityError, EngineRequest, TokenLogprob
from plait.runtime.runner import StreamInput
from plait.runtime.sampling import Sampler
from plait.runtime.segments import KVStore, Segment


@dataclass(slots=True, kw_only=True)
class EngineConfig:
    """Limits of one engine."""

    kv_budget_tokens: int = 32768  # KV slots for all requests and the prefix cache
    max_rows: int = 64  # samples (and group streams) decoding at once
    step_tokens: int = 512  # tokens per forward step (decode rows + prefill chunks)
    block_tokens: int = 64  # prefix-cache block size

    def __post_init__(self) -> None:
        for name in ("kv_budget_tokens", "max_rows", "step_tokens", "block_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


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


@dataclass(slots=True, eq=False)
class RequestState:
    """A running (or waiting) request: its path in the prefix cache and private segments."""

    request: EngineRequest
    budget: int  # max_tokens clamped to the context
    path: list[CacheBlock] = field(default_factory=list)
    tail: Segment | None = None
    samples: list[Sample] = field(default_factory=list)
    cached_tokens: int = 0
    reserved: int = 0  # private slots (tail + samples)
    tail_start: int = 0  # prompt index where the tail begins (len(path) * B)

    @property
    def tail_tokens(self) -> list[int]:
        return self.request.prompt[self.tail_start :]

    @property
    def prefilled(self) -> bool:
        return self.tail is not None and self.tail.length == len(self.tail_tokens)

    def view(self) -> list[Segment]:
        assert self.tail is not None
        return [*(b.segment for b in self.path), self.tail]


@dataclass(slots=True, eq=False)
class GroupState:
    request_id: str
    group: StreamGroup
    error: str | None = None


@dataclass(slots=True)
class Work:
    """One stream of a step."""

    kind: Literal["decode", "prefill", "group"]
    state: RequestState | GroupState
    input: StreamInput
    sample: Sample | None = None  # decode
    last: bool = False  # prefill: completes the prompt (its logits start every sample)


@dataclass(slots=True)
class SchedulerOutput:
    work: list[Work]
    instant: bool
    tokens: int


class Scheduler:
    """Waiting queue, running set, admission and step plans (see the module docstring)."""

    def __init__(self, config: EngineConfig, cache: PrefixCache) -> None:
        self.config, self.cache = config, cache
        self.waiting: deque[RequestState | GroupState] = deque()
        self.running: list[RequestState | GroupState] = []

    # ------------------------------------------------------------------ admission

    def private_need(self, req: EngineRequest, budget: int) -> int:
        tail = len(req.prompt) - self.cache.cached_blocks(req.prompt) * self.cache.block
        return tail + req.n * budget

    def check_fits(self, req: EngineRequest, budget: int) -> None:
        """Refuse a request that could never be admitted (alone, with an empty cache)."""
        c = self.config
        need = self.cache.cached_blocks(req.prompt) * self.cache.block
        need += self.private_need(req, budget)
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
        """(KV slots reserved by running requests, groups and the cache; rows in use)."""
        slots, rows = self.cache.total_tokens(), 0
        for st in self.running:
            if isinstance(st, GroupState):
                slots, rows = slots + st.group.kv_tokens, rows + st.group.rows
            else:
                slots, rows = slots + st.reserved, rows + len(st.samples)
        return slots, rows

    def try_admit(self, st: RequestState | GroupState) -> bool:
        """Whether `st` fits now; if so, evict what it needs and hold its cache path."""
        c, cache = self.config, self.cache
        slots, rows = self.used()
        if isinstance(st, GroupState):
            need, keep, new_rows = st.group.kv_tokens, [], st.group.rows
        else:
            req = st.request
            keep = cache.lookup(req.prompt)
            missing = cache.cached_blocks(req.prompt) - len(keep)
            need = missing * cache.block + self.private_need(req, st.budget)
            new_rows = req.n
        if rows + new_rows > c.max_rows:
            return False
        excess = slots + need - c.kv_budget_tokens
        if excess > 0 and excess > cache.evictable_tokens(keep):
            return False
        if isinstance(st, RequestState):
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

    def start(self, st: RequestState, store: KVStore, tokenizer: Any) -> None:
        """Allocate an admitted request's tail and sample segments; one sampler per sample."""
        req = st.request
        st.tail = store.new_segment(len(st.tail_tokens), name=f"{req.request_id}/prompt")
        last = st.path[-1] if st.path else None  # its last token is computed: it gives logits
        self.cache.reuse(last, st.tail, st.tail_tokens, len(st.tail_tokens) - 1)
        for i in range(req.n):  # what may fail first, then the segment (freed with the state)
            sampler = Sampler([replace(req.sampling, seed=req.seed(i))])
            text = None
            if tokenizer is not None:
                text = TextStream(tokenizer, req.stop, req.include_stop_str)
            seg = store.new_segment(st.budget, name=f"{req.request_id}/{i}")
            st.samples.append(Sample(i, seg, st.budget, sampler, text))
        st.reserved = len(st.tail_tokens) + req.n * st.budget

    def keep_output(self, st: RequestState, s: Sample) -> int:
        """Put prompt + a finished sample's fed tokens into the prefix cache (`cache_output`):
        as many blocks as the KV budget holds after evicting older unheld ones; returns the
        tokens kept."""
        req, cache, b = st.request, self.cache, self.cache.block
        tokens = [*req.prompt, *s.segment.tokens]  # the last token was never fed: no K/V
        want = (-(-len(tokens) // b) - len(st.path)) * b  # full blocks and the partial one
        room = self.config.kv_budget_tokens - self.used()[0]
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
            for s in st.samples:
                if s.feed is not None:
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
            if not st.prefilled:
                budget = self._prefill(st, budget, writing, instant, work)
        return SchedulerOutput(work, instant, self.config.step_tokens - budget)

    def _prefill(
        self, st: RequestState, budget: int, writing: set[int], instant: bool, work: list[Work]
    ) -> int:
        """Append the request's next prefill pieces to `work`; returns the budget left."""
        pieces: list[tuple[Segment, list[int], int]] = []  # (segment, its tokens, view length)
        pieces += [(b.segment, list(b.tokens), i + 1) for i, b in enumerate(st.path)]
        assert st.tail is not None
        pieces.append((st.tail, st.tail_tokens, len(st.path) + 1))
        view = st.view()
        for seg, tokens, upto in pieces:
            if seg.length == len(tokens):
                continue
            if id(seg) in writing or budget <= 0:
                return budget  # filled by another request this step / no budget left
            take = tokens[seg.length : seg.length + budget]
            complete = seg.length + len(take) == len(tokens)
            last = complete and seg is st.tail
            work.append(Work("prefill", st, StreamInput(take, view[:upto], seg), last=last))
            writing.add(id(seg))
            budget -= len(take)
            if not complete or not instant:
                return budget
        return budget
