"""A Hogwild! problem as one multi-stream request of the continuous-batching engine.

    group = HogwildGroup(HogwildEngine(model, tokenizer, config), "A farmer has ...")
    engine.add_group(group)                        # a `plait.runtime.engine.Engine`
    while engine.has_work:
        for out in engine.step(): ...              # GroupOutput.events: TokenEvent, ..., DoneEvent

`HogwildGroup` implements the engine's `StreamGroup` protocol (plait/runtime/engine/groups.py):
its W workers' streams (over the problem's own segments: common history, shared texts,
per-worker steps) join every engine step next to other requests' rows; the problem's state
machine (`ProblemRun`) samples, applies the paragraph rule and records snapshots exactly as
`HogwildEngine.stream` does for one problem (the same `start` / `flush` / `record_finisher`).
When a budget ends without an answer, the finisher's reader streams (`FinisherBatch`) take the
group's place in the next steps of the shared batch. `HogwildEngine.stream` runs its problems
this way on a private engine, and the server's `hogwild` extension (plait/serve/hogwild_ext.py)
on the server's.
"""

from __future__ import annotations

from typing import Any

import torch

from plait.hogwild.engine import COMMON_SLACK, STEP_START, HogwildEngine
from plait.hogwild.events import Event
from plait.hogwild.finisher import FinisherBatch, FinisherRequest
from plait.hogwild.run import ProblemRun
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore


class HogwildGroup:
    """One Hogwild! problem as a `StreamGroup` (see the module docstring).

    Args:
        hogwild: the problem's engine (config, tokenizer, sampling); `start` binds it to the
            serving engine's runner and store.
        problem: the problem statement.
        index: the problem's index in its events (and its sampling seed, as in `stream`).
    """

    def __init__(self, hogwild: HogwildEngine, problem: str, index: int = 0) -> None:
        hogwild.check_problem(index, problem)
        self.hw, self.problem, self.index = hogwild, problem, index
        c = hogwild.cfg
        prompt = len(hogwild.encode(hogwild.prompt_text(problem)))
        shared = len(hogwild.layout.shared(c.workers))
        # an upper bound on what the workspace, its growth and the finisher may allocate, and
        # what `start` allocates (the segments grow on demand; the engine preempts under pressure)
        step_cap = 2 * c.workers * min(c.capacity, 1024)
        self.kv_tokens = (prompt + 64 + 2 * c.workers * c.max_budget + step_cap
                          + 16 * shared + c.finisher_max_tokens + 64)  # fmt: skip
        self.kv_start_tokens = prompt + COMMON_SLACK + 2 * c.workers * min(c.capacity, STEP_START)
        self.kv_start_tokens += 16 * shared
        self.rows = 2 * c.workers
        self.instant = c.instant
        self.restartable = True  # deterministic: `start` after `release` replays the same run
        self.run: ProblemRun | None = None
        self.finisher: FinisherBatch | None = None
        self.error: Exception | None = None
        self._planned: tuple[list[Any], list[Any]] = ([], [])

    def start(self, store: KVStore, runner: Runner) -> None:
        if runner.store is not store:
            raise ValueError("the runner must run over the given store")
        self.hw.bind(runner)
        self.finisher, self.error, self._planned = None, None, ([], [])
        self.run = self.hw.start(self.index, self.problem)  # prompt prefill + state machine

    def _run(self) -> ProblemRun:
        if self.run is None:
            raise ValueError("the group has not started; the engine calls start() first")
        return self.run

    def plan(self, budget: int) -> list[StreamInput]:
        if self.finisher is not None:  # the finisher's readers run before the next pass
            return [StreamInput(t, v, w) for t, v, w in self.finisher.streams()]
        run = self._run()
        feeds = run.feeds()
        planned = run.ws.plan(feeds)
        self._planned = (feeds, planned)
        return [StreamInput(s.tokens, s.view, s.write_to) for s in planned]

    def advance(self, logits: torch.Tensor) -> list[Event]:
        """Consume the planned streams' logits (S, V); returns this step's events. An exception
        (e.g. from a `choose` hook) is kept in `error` for the driver to re-raise."""
        try:
            if self.finisher is not None:
                return self._advance_finisher(logits)
            return self._advance_workers(logits)
        except Exception as exc:
            self.error = exc
            raise

    def _advance_workers(self, logits: torch.Tensor) -> list[Event]:
        run = self._run()
        feeds, planned = self._planned
        if self.hw.on_pass is not None:
            self.hw.on_pass(run.index, run.passes + 1, feeds, planned, logits)
        run.advance(feeds, {s.worker: logits[k] for k, s in enumerate(planned) if s.logits})
        events: list[Event] = list(run.events)  # type: ignore[arg-type]
        run.events.clear()
        if run.pending_finishers():
            c, hw = self.hw.cfg, self.hw
            view = [FinisherRequest(view=run.ws.reader_view())]
            self.finisher = FinisherBatch(
                hw.store, view, hw.encode, hw.decode, c.task, c.finisher_max_tokens
            )
            return events
        return events + list(self.hw.flush(run))

    def _advance_finisher(self, logits: torch.Tensor) -> list[Event]:
        assert self.finisher is not None
        self.finisher.advance(logits)
        if not self.finisher.done:
            return []
        ((answer, text),) = self.finisher.results()
        self.finisher.free()
        self.finisher = None
        run = self._run()
        self.hw.record_finisher(run, answer, text)
        return list(self.hw.flush(run))

    @property
    def done(self) -> bool:
        return self.run is not None and self.run.finished and self.finisher is None

    def release(self) -> None:
        if self.finisher is not None:
            self.finisher.free()
            self.finisher = None
        if self.run is not None:
            self.run.ws.free()
