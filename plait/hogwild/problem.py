"""One Hogwild! problem as one multi-stream request of the continuous-batching engine.

    problem = HogwildProblem(model, tokenizer, HogwildConfig(workers=2), "A farmer has ...")
    engine.add_group(problem)                      # any `plait.runtime.engine.Engine`
    while engine.has_work:
        for out in engine.step(): ...              # GroupOutput.events: TokenEvent, ..., DoneEvent

`HogwildProblem` implements the engine's `StreamGroup` (plait/runtime/engine/groups.py) and owns
everything about its problem: `start` prefills the prompt and shared texts into segments of the
engine's store and builds the state machine (`ProblemRun`); each step `plan` gives the W
workers' streams (its own segments: common history, shared texts, per-worker steps; the layout
chooses each worker's view) and `advance` samples, applies the paragraph rule and moves finished
steps; when a budget ends without an answer the finisher's reader streams (`FinisherBatch`)
take the workers' place in the next steps; `flush` turns snapshots into events and `result`
builds the `ProblemResult`. It holds no KV pool and no runner: the engine that admits it lends
them in `start`. `plait.hogwild.solve` runs problems on a private engine; the server's `hogwild`
extension on the server's.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent, Event, ProblemResult, SnapshotEvent
from plait.hogwild.finisher import FinisherBatch, FinisherRequest
from plait.hogwild.layouts import get_layout
from plait.hogwild.paragraph import step_ends
from plait.hogwild.prompts import PromptFormat, common_prompt, seed_step
from plait.hogwild.run import ProblemRun, StepRule
from plait.hogwild.worker_sampling import WorkerSampler, suppressed_ids
from plait.hogwild.workspace import PlannedStream, Workspace
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore

TokenHook = Callable[[int, int, torch.Tensor], int]  # (problem, worker, logits (V,)) -> token id

STEP_START = 128  # slots a worker's step segment starts with (grows on demand)
COMMON_SLACK = 64  # slots after the prompt the common segment starts with (grows on demand)


class HogwildProblem:
    """One Hogwild! problem as a `StreamGroup` (see the module docstring).

    Args:
        model: a `DecoderLM` (its config: family, context, vocabulary, EOS ids).
        tokenizer: a transformers tokenizer (encode/decode, optional chat template).
        config: the run's `HogwildConfig`.
        problem: the problem statement (a non-empty string).
        index: the problem's index in its events and its sampling seed.
        sampling: per-worker sampling (`temperature`, `top_k`, `top_p`); None = greedy.
        prompt_format: per-model formatting; None = derived from the model family.
        choose: override the token choice `(problem, worker, logits) -> id` (tests).
        step_rule: override the paragraph rule `(step_text, token_text) -> bool` (tests).
        on_pass: hook called after each forward with (problem, pass, feeds, planned streams,
            logits (S_problem, V) of those streams); tests use it to replay the schedule.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: HogwildConfig,
        problem: str,
        index: int = 0,
        *,
        sampling: Any = None,
        prompt_format: PromptFormat | None = None,
        choose: TokenHook | None = None,
        step_rule: StepRule | None = None,
        on_pass: Callable[..., None] | None = None,
    ) -> None:
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(
                f"problem {index} is empty; pass the problem statement as a non-empty string"
            )
        self.tokenizer, self.cfg, self.problem, self.index = tokenizer, config, problem, index
        self.model_config = model.config
        self.layout = get_layout(config.layout)
        self.format = prompt_format or PromptFormat.for_model_type(model.config.family)
        self.sampling, self.choose, self.on_pass = sampling, choose, on_pass
        self.step_rule = step_rule or step_ends
        eos = set(model.config.eos_token_ids)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            eos.add(int(tokenizer.eos_token_id))
        self.eos = frozenset(eos)
        suppress = suppressed_ids(tokenizer, config.suppressed_texts, model.config.vocab_size)
        self.suppress = sorted(set(suppress) | self.eos) if config.eos_suppressed else suppress
        self.prompt_text = common_prompt(
            tokenizer, problem, config.resolved_names, self.format, sequential=config.sequential,
            variant=config.prompt, tips=config.collaboration_tips, few_shot=config.few_shot,
            past_steps=self.layout.merges_steps, instructions=config.instructions,
        )  # fmt: skip
        c, limit = config, model.config.max_position
        if c.workers * c.max_budget >= limit or c.finisher_max_tokens >= limit:
            raise ValueError(  # refused before the engine sizes a cache for it
                f"problem {index}: {c.workers} workers x {c.max_budget} passes (finisher "
                f"{c.finisher_max_tokens} tokens) cannot fit the model's {limit}-token context; "
                "lower the budgets or --finisher-tokens"
            )
        prompt = len(self.encode(self.prompt_text))
        shared = len(self.layout.shared(c.workers))
        # StreamGroup's admission figures: an upper bound on what the workspace, its growth
        # and the finisher may allocate, what `start` allocates (the segments grow on demand;
        # the engine preempts under pressure), and the most streams of one step
        self.kv_tokens = (prompt + 64 + 2 * c.workers * c.max_budget + 2 * c.workers * min(c.capacity, 1024)
                          + 16 * shared + c.finisher_max_tokens + 64)  # fmt: skip
        step_start = min(c.capacity, STEP_START)
        self.kv_start_tokens = prompt + COMMON_SLACK + 2 * c.workers * step_start + 16 * shared
        self.rows = 2 * c.workers
        self.instant = c.instant
        self.restartable = True  # deterministic: `start` after `release` replays the same run
        self.run: ProblemRun | None = None
        self.store: KVStore | None = None
        self.finisher: FinisherBatch | None = None
        self.error: Exception | None = None
        self._planned: tuple[list[Any], list[PlannedStream]] = ([], [])

    # ------------------------------------------------------------------ text

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    # ------------------------------------------------------------------ StreamGroup

    def start(self, store: KVStore, runner: Runner) -> None:
        """Prefill the prompt and shared texts into new segments of `store`; the state machine."""
        if runner.store is not store:
            raise ValueError("the runner must run over the given store")
        c, index = self.cfg, self.index
        self.finisher, self.error, self._planned = None, None, ([], [])  # a restart begins anew
        ids = self.encode(self.prompt_text)
        seeds = [
            self.encode(seed_step(i, n, c.sequential, c.prompt))
            for i, n in enumerate(c.resolved_names)
        ]
        hidden = 0
        if not all(seeds):  # a worker without a seed: the prompt's last token opens every
            # worker's first step (unrecorded), so the model writes its first token itself
            ids, seeds, hidden = ids[:-1], [ids[-1:] + s for s in seeds], 1
        shared_len = sum(len(self.encode(t)) for _, t in self.layout.shared(c.workers))
        need = len(ids) + shared_len + sum(len(s) for s in seeds)
        limit = self.model_config.max_position
        if need >= limit:
            raise ValueError(
                f"problem {index}: the prompt needs {need} tokens but the model's context is {limit}; "
                "shorten the problem, drop few_shot/collaboration_tips, or use fewer workers"
            )
        if need + c.workers * (c.max_budget + 16) > limit:
            warnings.warn(
                f"problem {index}: {c.workers} workers x {c.max_budget} passes may exceed the "
                f"model's {limit}-token context; lower the budget or the number of workers",
                stacklevel=3,
            )
        ws = Workspace(  # sized for now: the segments grow as steps are written (KV on demand)
            store, self.layout, c.workers, capacity=min(c.capacity, STEP_START), instant=c.instant,
            prompt_capacity=len(ids) + COMMON_SLACK,
        )  # fmt: skip
        self.store = store
        runner.prefill(ws.common, ids)
        for seg, text, view in ws.shared_prefill_views():
            runner.prefill(seg, self.encode(text), view=view)
        sampler = WorkerSampler(
            c.workers, self.sampling, self.suppress, seed=c.base_seed * 1_000_003 + index
        )
        hook = self.choose
        choose = (lambda w, row: hook(index, w, row)) if hook is not None else sampler
        self.run = ProblemRun(
            index, self.problem, self.prompt_text, ws, c, seeds, self.decode, self.encode,
            choose, self.eos, self.step_rule, hidden=hidden,
        )  # fmt: skip

    def _run(self) -> ProblemRun:
        if self.run is None:
            raise ValueError("the problem has not started; the engine calls start() first")
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
        if self.on_pass is not None:
            self.on_pass(run.index, run.passes + 1, feeds, planned, logits)
        run.advance(feeds, {s.worker: logits[k] for k, s in enumerate(planned) if s.logits})
        events: list[Event] = list(run.events)  # type: ignore[arg-type]
        run.events.clear()
        if run.pending_finishers():
            c, view = self.cfg, [FinisherRequest(view=run.ws.reader_view())]
            self.finisher = FinisherBatch(
                self.store, view, self.encode, self.decode, c.task, c.finisher_max_tokens
            )
            return events
        return events + list(self.flush())

    def _advance_finisher(self, logits: torch.Tensor) -> list[Event]:
        assert self.finisher is not None
        self.finisher.advance(logits)
        if not self.finisher.done:
            return []
        ((answer, text),) = self.finisher.results()
        self.finisher.free()
        self.finisher = None
        for snap in self._run().pending_finishers():
            snap.answer, snap.finisher_text = answer, text
            snap.answer_source = "finisher" if answer is not None else "none"
        return list(self.flush())

    @property
    def done(self) -> bool:
        return self.run is not None and self.run.finished and self.finisher is None

    def release(self) -> None:
        if self.finisher is not None:
            self.finisher.free()
            self.finisher = None
        if self.run is not None:
            self.run.ws.free()

    # ------------------------------------------------------------------ results

    def flush(self) -> Iterator[Event]:
        """Events for the snapshots taken since the last flush, then the DoneEvent."""
        r = self._run()
        while r.emitted < len(r.snapshots):
            yield SnapshotEvent(r.index, r.snapshots[r.emitted])
            r.emitted += 1
        if r.finished and not r.reported:
            r.reported = True
            yield DoneEvent(r.index, self.result())

    def result(self) -> ProblemResult:
        r = self._run()
        return ProblemResult(
            problem=r.problem, prompt=r.prompt, workers=self.cfg.resolved_names,
            layout=self.layout.name, snapshots=list(r.snapshots),
        )  # fmt: skip
