"""KV on demand: grow the segments a step writes, and preempt when the budget cannot hold that.

Nothing reserves a sequence's worst case. Before each step the engine asks `fit_step` for the
step's plan: it adds up the growth the plan's writes need (a segment that would overflow grows by
`KVPool.target`: in place to the next unit, or moved with a slack), and while the slots held plus
that growth exceed the KV budget it first evicts prefix-cache blocks nobody holds, then preempts
the most recently admitted request or group (never the oldest running one, which therefore always
makes progress; a group only if it can restart: `restartable`) and plans again. Then it grows the
segments, so the runner's own `reserve` finds room. A preempted request frees all its KV and
waits at the front of the queue; its samples keep their tokens and sampler states, and when it is
re-admitted it recomputes prompt + generated tokens (`states.Sample.replay`), emitting nothing
twice. A preempted group is released whole and started again later; the events its replay
produces that were already delivered are dropped (the group must be deterministic).
"""

from __future__ import annotations

from collections.abc import Callable

from plait.runtime.engine.kv_pool import KVPool
from plait.runtime.engine.requests import EngineStats
from plait.runtime.engine.scheduler import Scheduler, SchedulerOutput, Work
from plait.runtime.engine.states import GroupState, RequestState
from plait.runtime.segments import Segment

State = RequestState | GroupState


def growth(plan: SchedulerOutput) -> list[tuple[Segment, int, int | None]]:
    """(segment, tokens it must hold after the step, most it ever holds) of each segment the
    plan's writes overflow."""
    need: dict[int, tuple[Segment, int, int | None]] = {}
    for w in plan.work:
        seg = w.input.write_to
        _, n, most = need.get(id(seg), (seg, seg.length, None))
        if w.sample is not None:
            most = w.sample.budget
        need[id(seg)] = (seg, n + len(w.input.tokens), most)
    return [(seg, n, most) for seg, n, most in need.values() if n > seg.capacity]


def count_work(work: list[Work], stats: EngineStats) -> None:
    """Count a step's prompt tokens (prefill) and recomputed generated tokens (replay)."""
    for w in work:
        stats.computed_prompt_tokens += len(w.input.tokens) * (w.kind == "prefill")
        stats.recomputed_tokens += len(w.input.tokens) * (w.kind == "replay")


def victim(sched: Scheduler) -> State | None:
    """The most recently admitted preemptible request or group, never the oldest running one."""
    for st in reversed(sched.running[1:]):
        if isinstance(st, RequestState) or getattr(st.group, "restartable", False):
            return st
    return None


def fit_step(sched: Scheduler, pool: KVPool, preempt: Callable[[State], None]) -> SchedulerOutput:
    """The next step's plan with its growth made to fit the KV budget (module docstring)."""
    budget = sched.config.kv_budget_tokens
    while True:
        plan = sched.plan()
        grows = growth(plan)
        extra = sum(pool.target(seg, n, most) - seg.capacity for seg, n, most in grows)
        over = pool.held + extra - budget
        if over > 0:
            over -= sched.cache.evict(over)
        st = victim(sched) if over > 0 else None
        if st is None:
            break
        preempt(st)
    for seg, n, most in grows:
        pool.grow(seg, n, most)
    return plan
