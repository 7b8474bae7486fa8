"""Step-level loop guard: is a step a repeat of earlier steps, and what a worker does about it.

A step's *overlap* is the fraction of its word n-grams (its generated text: header, seed and
interjection excluded; lower case, punctuation dropped, numbers kept) that already occur in earlier steps of any worker or
earlier in the same step. A step with fewer than n words is a repeat when the same words form an
earlier step. A step whose overlap reaches the threshold is a *duplicate*.

- `StepMemory` holds the n-grams of the finished steps of one problem (all workers) and answers
  `overlap(text)`. The duplicate-step rate of every run (guard on or off) is measured with it.
- `LoopGuard` (one per problem) watches each worker's growing step. With `mode="cut"` a step that
  becomes a duplicate (checked at every word once it has `min_ngrams` n-grams, and when it ends) is
  cut back to its header and written again, with the token ids of the cut text penalised
  (`penalty` subtracted from their logits) until the worker finishes a step. With
  `mode="penalise"` nothing is cut: a finished duplicate step stays, and its tokens are penalised
  in the worker's next step. `mode="off"` only measures.

The guard is pure bookkeeping over text and token ids (no tensors but the logits row it adjusts),
so any engine that drives `ProblemRun` (or its own state machine) can use it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import torch

_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")
_ENUMERATION = re.compile(r"^\s*\d+[.)]\s", re.MULTILINE)  # "3. " list markers are not content
GUARD_MODES = ("off", "cut", "penalise")


def words(text: str) -> list[str]:
    """Normalised words of a step's text: lower-case letter runs and numbers (commas and list
    markers such as "3. " at a line start dropped)."""
    return _WORD.findall(_ENUMERATION.sub(" ", text).lower().replace(",", ""))


def ngrams(ws: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(ws[k : k + n]) for k in range(len(ws) - n + 1)]


class StepMemory:
    """N-grams (and short-step word tuples) of a problem's finished steps."""

    def __init__(self, n: int = 3) -> None:
        if n < 1:
            raise ValueError(f"n-gram length must be >= 1, got {n}")
        self.n = n
        self.grams: Counter[tuple[str, ...]] = Counter()
        self.short: set[tuple[str, ...]] = set()

    def overlap(self, text: str) -> float:
        """Fraction of the step's n-grams seen before (in memory or earlier in the step)."""
        ws = words(text)
        grams = ngrams(ws, self.n)
        if not grams:
            return 1.0 if ws and tuple(ws) in self.short else 0.0
        seen: set[tuple[str, ...]] = set()
        repeated = 0
        for g in grams:
            repeated += g in self.grams or g in seen
            seen.add(g)
        return repeated / len(grams)

    def size(self, text: str) -> int:
        """Number of n-grams in a step."""
        return max(0, len(words(text)) - self.n + 1)

    def add(self, text: str) -> None:
        ws = words(text)
        self.grams.update(ngrams(ws, self.n))
        if ws:
            self.short.add(tuple(ws))


@dataclass(slots=True)
class GuardStats:
    """Counts for one problem: finished steps, duplicates among them, and cuts made."""

    steps: int = 0
    duplicates: int = 0
    cuts: int = 0

    @property
    def duplicate_rate(self) -> float:
        return self.duplicates / self.steps if self.steps else 0.0


@dataclass(slots=True)
class _Worker:
    penalised: set[int] = field(default_factory=set)
    checked_words: int = 0


class LoopGuard:
    """Duplicate detection, cut decisions and penalties for the workers of one problem.

    Args:
        workers: number of workers.
        mode: "off" (measure only), "cut" or "penalise" (see the module docstring).
        n: n-gram length in words.
        threshold: overlap at or above which a step is a duplicate.
        penalty: logit penalty for the token ids of a cut (or duplicate) step.
        min_ngrams: a growing step is checked once it has this many n-grams.

    Texts passed in are a step's generated content (its header, seed and interjection excluded).
    """

    def __init__(
        self,
        workers: int,
        mode: str = "off",
        n: int = 3,
        threshold: float = 0.5,
        penalty: float = 4.0,
        min_ngrams: int = 6,
    ) -> None:
        if mode not in GUARD_MODES:
            raise ValueError(f"loop guard mode must be one of {GUARD_MODES}, got {mode!r}")
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"loop guard threshold must be in (0, 1], got {threshold}")
        self.mode, self.threshold, self.penalty, self.min_ngrams = (
            mode,
            threshold,
            penalty,
            min_ngrams,
        )
        self.memory = StepMemory(n)
        self.workers = [_Worker() for _ in range(workers)]
        self.stats = GuardStats()

    def is_duplicate(self, text: str) -> bool:
        return self.memory.overlap(text) >= self.threshold

    def should_cut(self, worker: int, step_text: str, ends: bool) -> bool:
        """Cut this growing step now? (mode "cut": at step end, or mid-step once long enough)."""
        if self.mode != "cut":
            return False
        w = self.workers[worker]
        count = len(words(step_text))
        if not ends and (count == w.checked_words or self.memory.size(step_text) < self.min_ngrams):
            return False
        w.checked_words = count
        return self.is_duplicate(step_text)

    def on_cut(self, worker: int, token_ids: list[int]) -> None:
        """A step was cut: penalise its tokens until the worker finishes a step."""
        self.stats.cuts += 1
        w = self.workers[worker]
        w.penalised.update(token_ids)
        w.checked_words = 0

    def on_step(self, worker: int, text: str, token_ids: list[int]) -> bool:
        """A step was finished and kept: count it, remember it; returns whether it is a duplicate."""
        dup = self.is_duplicate(text)
        self.stats.steps += 1
        self.stats.duplicates += dup
        self.memory.add(text)
        w = self.workers[worker]
        w.penalised = set(token_ids) if dup and self.mode == "penalise" else set()
        w.checked_words = 0
        return dup

    def adjust(self, worker: int, logits: torch.Tensor) -> torch.Tensor:
        """The worker's logits row (V,) with its penalised token ids lowered."""
        ids = self.workers[worker].penalised
        if not ids or self.penalty == 0:
            return logits
        out = logits.clone()
        out[torch.tensor(sorted(ids), dtype=torch.long)] -= self.penalty
        return out
