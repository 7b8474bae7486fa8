"""HogwildEngine: several problems x W workers decoding in one batched forward per step.

    engine = HogwildEngine(model, tokenizer, HogwildConfig(workers=2, budgets=(256, 512)))
    result = engine.solve("A farmer has ...")          # ProblemResult with one snapshot per budget
    for event in engine.stream(["p1", "p2"]): ...       # TokenEvent / StepEvent / SnapshotEvent / DoneEvent

`stream` is a thin user of the continuous-batching engine (`plait.runtime.engine`): each problem
is a `HogwildGroup` (plait/hogwild/group.py) of a private `Engine`. Each step: 1) every live
problem plans its workers' streams (`Workspace.plan`), 2) one `Runner.step` runs them all, 3)
each problem samples, applies the paragraph rule and moves finished steps (`ProblemRun.advance`),
4) a budget snapshot without an answer gets the finisher: its reader streams (reading the
existing segments) take the problem's place in the next steps, next to the other problems' workers.

The pieces the group (and any other driver, e.g. the server's engine) uses are public: `start`
(prompt prefill + state machine), `record_finisher`, `flush` (pending snapshot / done events);
`bind` points the engine at another runner and its store.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import DoneEvent, Event, ProblemResult, SnapshotEvent
from plait.hogwild.layouts import get_layout
from plait.hogwild.paragraph import step_ends
from plait.hogwild.prompts import PromptFormat, common_prompt, seed_step
from plait.hogwild.run import ProblemRun, StepRule
from plait.hogwild.sampling import WorkerSampler, suppressed_ids
from plait.hogwild.workspace import Workspace
from plait.runtime.engine.kv_pool import KVPool
from plait.runtime.runner import Runner

STEP_START = 128  # slots a worker's step segment starts with (grows on demand)
COMMON_SLACK = 64  # slots after the prompt the common segment starts with (grows on demand)


class HogwildEngine:
    """Hogwild! Inference over plait's runtime (see the module docstring).

    Args:
        model: a `DecoderLM`.
        tokenizer: a transformers tokenizer (encode/decode, optional chat template).
        config: the run's `HogwildConfig`.
        sampling: per-worker sampling (`temperature`, `top_k`, `top_p`); None = greedy.
        attention: runtime attention path, "fast" or "reference".
        prompt_format: per-model formatting; None = derived from the model family.
        choose: override the token choice `(worker, logits) -> id` (tests: forced schedules).
        step_rule: override the paragraph rule `(step_text, token_text) -> bool` (tests).
        on_pass: hook called after each forward with (problem, pass, feeds, planned streams,
            logits (S_problem, V) of those streams); tests use it to replay the schedule.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        config: HogwildConfig,
        sampling: Any = None,
        attention: str = "fast",
        prompt_format: PromptFormat | None = None,
        choose: Callable[[int, int, torch.Tensor], int] | None = None,
        step_rule: StepRule | None = None,
        on_pass: Callable[..., None] | None = None,
    ) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, config
        self.layout = get_layout(config.layout)
        # the runner `stream`'s private engine steps (a pool: freed ranges are reused)
        store = KVPool(model.config, model.dtype, model.device, model.rope)
        self.runner = Runner(model, store, attention=attention)
        self.store = self.runner.store
        self.format = prompt_format or PromptFormat.for_model_type(model.config.family)
        self.sampling = sampling
        self.suppress = suppressed_ids(tokenizer, config.suppressed_texts, model.config.vocab_size)
        eos = set(model.config.eos_token_ids)
        if getattr(tokenizer, "eos_token_id", None) is not None:
            eos.add(int(tokenizer.eos_token_id))
        self.eos = frozenset(eos)
        if config.eos_suppressed:
            self.suppress = sorted(set(self.suppress) | self.eos)
        self.choose, self.step_rule, self.on_pass = choose, step_rule or step_ends, on_pass

    # ------------------------------------------------------------------ text

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def prompt_text(self, problem: str) -> str:
        c = self.cfg
        return common_prompt(
            self.tokenizer,
            problem,
            c.resolved_names,
            self.format,
            sequential=c.sequential,
            variant=c.prompt,
            tips=c.collaboration_tips,
            few_shot=c.few_shot,
            past_steps=self.layout.merges_steps,
            instructions=c.instructions,
        )

    # ------------------------------------------------------------------ setup

    def bind(self, runner: Runner) -> None:
        """Run on `runner` and its store from now on (e.g. a serving engine's)."""
        self.runner, self.store = runner, runner.store

    @staticmethod
    def check_problem(index: int, problem: Any) -> None:
        """ValueError unless `problem` is a non-empty string."""
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(
                f"problem {index} is empty; pass the problem statement as a non-empty string"
            )

    def start(self, index: int, problem: str) -> ProblemRun:
        """Prefill problem `index`'s prompt and shared texts; its state machine."""
        c = self.cfg
        self.check_problem(index, problem)
        prompt = self.prompt_text(problem)
        ids = self.encode(prompt)
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
        limit = self.model.config.max_position
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
            self.store,
            self.layout,
            c.workers,
            capacity=min(c.capacity, STEP_START),
            instant=c.instant,
            prompt_capacity=len(ids) + COMMON_SLACK,
        )
        self.runner.prefill(ws.common, ids)
        for seg, text, view in ws.shared_prefill_views():
            self.runner.prefill(seg, self.encode(text), view=view)
        sampler = WorkerSampler(
            c.workers, self.sampling, self.suppress, seed=c.base_seed * 1_000_003 + index
        )
        override = self.choose
        choose = (lambda w, row: override(index, w, row)) if override is not None else sampler
        return ProblemRun(
            index,
            problem,
            prompt,
            ws,
            c,
            seeds,
            self.decode,
            self.encode,
            choose,
            self.eos,
            self.step_rule,
            hidden=hidden,
        )

    # ------------------------------------------------------------------ loop

    def stream(self, problems: str | Sequence[str]) -> Iterator[Event]:
        """Solve problems together (one forward per step for all); yield events as they happen.

        Each problem is a `HogwildGroup` of a private continuous-batching `Engine` sized for
        all of them, so every step runs every live problem's workers (or its finisher's
        readers) in one `Runner.step`."""
        from plait.hogwild.group import HogwildGroup  # it imports this module
        from plait.runtime.engine import Engine, EngineConfig, GroupOutput

        problems = [problems] if isinstance(problems, str) else list(problems)
        if not problems:
            raise ValueError("no problems given; pass a problem string or a non-empty list")
        groups = [HogwildGroup(self, p, i) for i, p in enumerate(problems)]
        config = EngineConfig(  # twice the bounds: room for growth slack, so nothing is preempted
            kv_budget_tokens=2 * sum(g.kv_tokens for g in groups),
            max_rows=sum(g.rows for g in groups),
        )
        engine = Engine(self.model, config=config, runner=self.runner)
        ids = [engine.add_group(g) for g in groups]
        try:
            while engine.has_work:
                for out in engine.step():
                    assert isinstance(out, GroupOutput)  # only groups run here
                    group = groups[ids.index(out.request_id)]
                    if group.error is not None:
                        raise group.error
                    yield from out.events  # type: ignore[misc]
        finally:
            for rid in ids:
                engine.cancel(rid)

    @staticmethod
    def record_finisher(r: ProblemRun, answer: str | None, text: str) -> None:
        """Give the finisher's answer to every snapshot of `r` waiting for one."""
        for snap in r.pending_finishers():
            snap.answer, snap.finisher_text = answer, text
            snap.answer_source = "finisher" if answer is not None else "none"

    def flush(self, r: ProblemRun) -> Iterator[Event]:
        """Events for the snapshots `r` took since the last flush, then its DoneEvent."""
        while r.emitted < len(r.snapshots):
            yield SnapshotEvent(r.index, r.snapshots[r.emitted])
            r.emitted += 1
        if r.finished and not r.reported:
            r.reported = True
            yield DoneEvent(r.index, self.result(r))

    def result(self, r: ProblemRun) -> ProblemResult:
        return ProblemResult(
            problem=r.problem,
            prompt=r.prompt,
            workers=self.cfg.resolved_names,
            layout=self.layout.name,
            snapshots=list(r.snapshots),
        )

    # ------------------------------------------------------------------ API

    def solve_batch(self, problems: Sequence[str]) -> list[ProblemResult]:
        """Solve several problems in one batch; results in input order."""
        results: dict[int, ProblemResult] = {}
        for ev in self.stream(list(problems)):
            if isinstance(ev, DoneEvent):
                results[ev.problem] = ev.result
        return [results[i] for i in range(len(problems))]

    def solve(self, problem: str) -> ProblemResult:
        """Solve one problem; the result has one snapshot per budget."""
        return self.solve_batch([problem])[0]
