"""One problem's Hogwild! run as a state machine: feeds in, logits out, steps, snapshots.

Per pass: `feeds()` gives each worker's `Feed` (None = idle); after the batched forward,
`advance(logits_by_worker)` samples each worker's next token, applies the paragraph rule and the
interjection policy, checks for a final answer and records snapshots at budget boundaries.
The engine owns the forward pass and the finisher; this class owns no tensors except logits rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from plait.hogwild.answering import Answers, placeholders
from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import CutEvent, Snapshot, StepEvent, StepText, TokenEvent
from plait.hogwild.interjection import InterjectionPolicy
from plait.hogwild.loopguard import LoopGuard
from plait.hogwild.paragraph import header, step_ends
from plait.hogwild.workspace import Feed, Workspace

StepRule = Callable[[str, str], bool]
TokenChooser = Callable[[int, torch.Tensor], int]  # (worker, logits (V,)) -> token id


@dataclass(slots=True)
class WorkerState:
    name: str
    step: int = 1
    step_tokens: list[int] = field(default_factory=list)  # fed tokens of the current step
    step_text: str = ""
    feed: Feed | None = None
    done: bool = False
    hidden: int = 0  # next fed tokens that belong to the prompt, not to the step text
    mark: tuple[int, int, int] | None = None
    """Where the step's generated content starts: (segment length, step tokens, step chars)."""


class ProblemRun:
    """State of one problem: its workspace, workers, budgets, snapshots and pending events."""

    def __init__(
        self,
        index: int,
        problem: str,
        prompt: str,
        ws: Workspace,
        cfg: HogwildConfig,
        seeds: list[list[int]],
        decode: Callable[[list[int]], str],
        encode: Callable[[str], list[int]],
        choose: TokenChooser,
        eos: frozenset[int],
        step_rule: StepRule = step_ends,
        hidden: int = 0,
    ) -> None:
        self.index, self.problem, self.prompt, self.ws, self.cfg = index, problem, prompt, ws, cfg
        self.decode, self.encode, self.choose, self.eos, self.step_rule = (
            decode,
            encode,
            choose,
            eos,
            step_rule,
        )
        self.workers = [
            WorkerState(name=n, feed=Feed(cur=list(s)), hidden=hidden)
            for n, s in zip(cfg.resolved_names, seeds)
        ]
        self.guard = LoopGuard(
            cfg.workers, cfg.loop_guard, cfg.loop_ngram, cfg.loop_threshold, cfg.loop_penalty
        )
        every = 0 if cfg.sequential else cfg.interjection_every
        self.interjection = InterjectionPolicy(
            cfg.workers, every, cfg.interjection_policy, cfg.base_seed
        )
        self.history: list[StepText] = []
        self.passes = 0
        self.tokens = 0  # tokens fed so far, all workers (headers and re-fed tokens included)
        self.answers = Answers(
            cfg.answer_policy, cfg.resolved_names, cfg.task, placeholders(prompt)
        )
        self.snapshots: list[Snapshot] = []
        self.events: list[object] = []
        self.emitted = 0  # snapshots already yielded as events
        self.reported = False

    # ------------------------------------------------------------------ state

    @property
    def finished(self) -> bool:
        return len(self.snapshots) == len(self.cfg.budgets)

    def feeds(self) -> list[Feed | None]:
        return [None if w.done or w.feed is None else w.feed for w in self.workers]

    def steps(self) -> list[StepText]:
        """The transcript: finished steps in KV order, then every worker's current step."""
        cur = [
            StepText(worker=i, name=w.name, step=w.step, text=w.step_text, finished=False)
            for i, w in enumerate(self.workers)
        ]
        return [*self.history, *cur]

    def next_header(self, i: int) -> str:
        w = self.workers[i]
        if self.cfg.sequential or not self.cfg.step_headers:
            return ""
        extra = self.cfg.interjection_text if self.interjection.take(i) else ""
        return header(w.name, w.step + 1, extra)

    # ------------------------------------------------------------------ pass

    def advance(self, feeds: list[Feed | None], logits: dict[int, torch.Tensor]) -> None:
        """Apply one finished forward pass: record fed tokens, move steps, sample next tokens."""
        self.passes += 1
        for i, f in enumerate(feeds):
            if f is None:
                continue
            self._record_fed(i, f.cur)
        # NOTE: check before steps move: an answer may close in the token that ends the step
        self._check_answer()
        moved = self.ws.commit(feeds)
        for i, f in enumerate(feeds):
            if f is None:
                continue
            w = self.workers[i]
            if f.switch:
                if i in moved or not self.ws.layout.merges_steps:
                    self._finish_step(i)
                if self.ws.defers_header(f):
                    w.feed = Feed(cur=list(f.nxt))
                    continue
                self._record_fed(i, f.nxt)
            if i not in logits or w.done:  # done: stopped at EOS or (answer vote) voted
                w.feed = None
                continue
            self._sample(i, logits[i])
        self._check_answer()
        stop = self.answers.final or all(w.done for w in self.workers)
        if self.passes in self.cfg.budgets or stop:
            self._snapshot_due()

    def _record_fed(self, i: int, tokens: list[int]) -> None:
        w = self.workers[i]
        self.tokens += len(tokens)
        for t in tokens:
            if w.hidden:
                w.hidden -= 1
                continue
            before = w.step_text
            w.step_tokens.append(t)
            w.step_text = self.decode(w.step_tokens)
            self.events.append(
                TokenEvent(self.index, i, self.passes, t, w.step_text[len(before) :])
            )

    def _finish_step(self, i: int) -> None:
        w = self.workers[i]
        _, n_tokens, n_chars = w.mark or (0, 0, 0)
        content = self._penalisable(w.step_tokens[n_tokens:])
        dup = self.guard.on_step(i, w.step_text[n_chars:], content)
        self.history.append(
            StepText(
                worker=i, name=w.name, step=w.step, text=w.step_text, finished=True, duplicate=dup
            )
        )
        self.events.append(StepEvent(self.index, i, w.step, w.step_text))
        w.step += 1
        w.step_tokens, w.step_text, w.mark = [], "", None

    def _sample(self, i: int, row: torch.Tensor) -> None:
        w = self.workers[i]
        if w.mark is None:  # the first token after the header (or seed): content starts here
            w.mark = (self.ws.current[i].length, len(w.step_tokens), len(w.step_text))
        tok = self.choose(i, self.guard.adjust(i, row))
        self.interjection.on_tokens(i)
        if tok in self.eos:
            w.done, w.feed = True, None
            return
        piece = self.decode([*w.step_tokens, tok])[len(w.step_text) :]
        ends = self.step_rule(w.step_text, piece)
        if self.guard.should_cut(i, w.step_text[w.mark[2] :] + piece, ends):
            self._cut(i)
        elif ends:
            w.feed = Feed(cur=[tok], switch=True, nxt=self.encode(self.next_header(i)))
        else:
            w.feed = Feed(cur=[tok])

    def _cut(self, i: int) -> None:
        """Drop the current step's content (a repeat) and write it again from its header."""
        w = self.workers[i]
        assert w.mark is not None
        length, n_tokens, n_chars = w.mark
        self.guard.on_cut(i, self._penalisable(w.step_tokens[n_tokens:]))
        self.events.append(CutEvent(self.index, i, w.step, w.step_text[n_chars:]))
        # re-feed the token before the content (the header's last, or the history's last when a
        # sequential step has no header): its logits start the new content
        store, cur = self.ws.store, self.ws.current[i]
        store.truncate(cur, length)
        seg = cur if length else self.ws.common  # no header: only W=1 (sequential) gets here
        again = seg.tokens[-1]
        store.truncate(seg, seg.length - 1)
        if n_tokens:
            w.step_tokens = w.step_tokens[: n_tokens - 1]
            w.step_text = self.decode(w.step_tokens)
        else:  # the re-fed token is the prompt's or the previous step's last (already in the text)
            w.step_tokens, w.step_text = [], ""
            w.hidden += 1
        w.mark = None
        w.feed = Feed(cur=[again])

    def _penalisable(self, ids: list[int]) -> list[int]:
        """Token ids with a letter in them (digits, spacing and punctuation are never penalised:
        the arithmetic needs them, and "\\n\\n" ends steps)."""
        return [t for t in set(ids) if any(ch.isalpha() for ch in self.decode([t]))]

    def _check_answer(self) -> None:
        if not self.cfg.stop_on_answer:
            return
        for i in self.answers.check([w.step_text for w in self.workers]):
            self.workers[i].done, self.workers[i].feed = True, None  # voted: stops writing

    # ------------------------------------------------------------------ snapshots

    def _snapshot_due(self) -> None:
        """Record snapshots for every budget reached (all remaining ones when the run stops)."""
        stop = self.answers.final is not None or all(w.done for w in self.workers)
        for b in self.cfg.budgets[len(self.snapshots) :]:
            if b > self.passes and not stop:
                break
            decided = self.answers.at_budget()
            if decided:
                ans, src = decided
            else:
                ans, src = None, "pending" if self.cfg.finisher else "none"
            g = self.guard.stats
            self.snapshots.append(
                Snapshot(
                    budget=b,
                    passes=self.passes,
                    answer=ans,
                    answer_source=src,
                    steps=self.steps(),
                    finished_steps=g.steps,
                    duplicate_steps=g.duplicates,
                    cut_steps=g.cuts,
                    tokens=self.tokens,
                )
            )

    def pending_finishers(self) -> list[Snapshot]:
        """Snapshots taken this pass that still need the finisher."""
        return [s for s in self.snapshots if s.answer_source == "pending"]
