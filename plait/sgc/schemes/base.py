"""Scheme core: explicit mini-task identities, round plans, the per-job ledger, admissibility.

A scheme is pure logic (no clocks, no torch). Each round it returns a ``RoundPlan`` (the
mini-tasks of every worker), and after the master's cut it ``commit``s which workers delivered.
A job's data is the sample range [0, job_size); ``pieces(task)`` gives the (start, stop, coeff)
ranges a mini-task combines, and ``decode_coeffs(job)`` the received tasks and coefficients
whose combination is the job's full gradient (exact for every scheme but ignore-stragglers).

Decodability is a status: "ok", "rows" (too few rows arrived) or "numeric" (enough rows, but the
code's decoding is ill-conditioned for this set, so the master waits for more). With
``counting`` (the paper's rules), a coded group with more than s missing rows is "rows" even
where the code could decode it, as in the authors' simulator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np


class MiniTask(NamedTuple):
    """Identity of one unit of work: job, group (0 = main/D1, 1..B = M-SGC D2 groups), chunk."""

    job: int
    group: int
    chunk: int


@dataclass(frozen=True, slots=True)
class RoundPlan:
    """What each worker computes in one round."""

    round: int
    tasks: tuple[tuple[MiniTask, ...], ...]  # per worker, in slot order
    samples: np.ndarray  # (n,) int samples per worker
    reattempts: int  # mini-tasks that re-do a chunk missed earlier

    @property
    def empty(self) -> bool:
        return not any(self.tasks)


class Scheme(ABC):
    """Shared state machine; subclasses set T, job_size, model, groups and the assignment."""

    name = "scheme"
    exact = True  # decoding returns the exact gradient

    def __init__(self, n: int, n_jobs: int) -> None:
        if n < 1:
            raise ValueError(f"need n >= 1 workers, got n={n}")
        if n_jobs < 1:
            raise ValueError(f"need n_jobs >= 1, got {n_jobs}")
        self.n = n
        self.n_jobs = n_jobs
        self.got: dict[int, list[np.ndarray]] = {}  # job -> per-group delivered masks
        self.declared: list[np.ndarray] = []  # per round: declared stragglers (n,) bool
        self.reattempted: list[int] = []  # per round: number of re-attempt mini-tasks
        self.ledger: list[tuple[int, int, MiniTask]] = []  # (round, worker, task) delivered
        self.decoded_at: dict[int, int] = {}  # job -> round it became decodable
        self.counting = False  # decide coded groups by counting rows (the paper's rules)
        self._sizes: dict[tuple[int, int], int] = {}

    # ---- per-scheme definition -------------------------------------------------------------
    T: int = 0
    job_size: int = 1

    @property
    @abstractmethod
    def model(self): ...

    @abstractmethod
    def group_sizes(self) -> list[int]: ...

    @abstractmethod
    def _assign(self, r: int) -> list[list[MiniTask]]: ...

    @abstractmethod
    def pieces(self, task: MiniTask) -> list[tuple[int, int, float]]: ...

    @abstractmethod
    def job_status(self, job: int, got: list[np.ndarray]) -> str:
        """ "ok", "rows" or "numeric" for ``job`` with the delivered masks ``got``."""

    def job_ok(self, job: int, got: list[np.ndarray]) -> bool:
        return self.job_status(job, got) == "ok"

    def coded_status(self, code, got: np.ndarray) -> str:
        """Status of one coded group (rows ``got`` (n,) bool) under this scheme's semantics."""
        if self.counting and int((~got).sum()) > code.s:
            return "rows"
        return code.status(got)

    def final_groups(self, r: int) -> list[tuple[int, int, Any]]:
        """(job, group, code) of coded groups whose rows get no later chance after round r."""
        return []

    @abstractmethod
    def decode_coeffs(self, job: int) -> list[tuple[MiniTask, float]]: ...

    @abstractmethod
    def load(self) -> Fraction: ...

    # ---- shared machinery ------------------------------------------------------------------
    @property
    def n_rounds(self) -> int:
        return self.n_jobs + self.T

    def plan(self, r: int) -> RoundPlan:
        tasks = self._assign(r)
        samples = np.array([sum(self._size(t) for t in ts) for ts in tasks], dtype=np.int64)
        re = sum(1 for ts in tasks for t in ts if self._is_reattempt(r, t))
        return RoundPlan(
            round=r, tasks=tuple(tuple(ts) for ts in tasks), samples=samples, reattempts=re
        )

    def _is_reattempt(self, r: int, t: MiniTask) -> bool:
        return False

    def _size(self, t: MiniTask) -> int:
        key = (t.group, t.chunk)
        if key not in self._sizes:
            self._sizes[key] = sum(b - a for a, b, c in self.pieces(t) if c != 0.0)
        return self._sizes[key]

    def _masks(self, job: int) -> list[np.ndarray]:
        if job not in self.got:
            self.got[job] = [np.zeros(k, dtype=bool) for k in self.group_sizes()]
        return self.got[job]

    def due(self, r: int) -> list[int]:
        """Jobs whose deadline is round r and that are not decoded yet."""
        j = r - self.T
        last = r >= self.n_rounds - 1
        jobs = [j] if 0 <= j < self.n_jobs else []
        if last:
            jobs = [k for k in range(self.n_jobs) if k not in self.decoded_at]
        return [k for k in jobs if k not in self.decoded_at]

    def _with(self, plan: RoundPlan, delivered: np.ndarray, job: int) -> list[np.ndarray]:
        """``job``'s delivered masks if exactly ``delivered`` (n,) bool workers arrive now."""
        got = [m.copy() for m in self._masks(job)]
        for i in np.flatnonzero(delivered):
            for t in plan.tasks[i]:
                if t.job == job:
                    got[t.group][t.chunk] = True
        return got

    def undecodable(self, plan: RoundPlan, delivered: np.ndarray) -> str | None:
        """Why round ``plan.round`` may not close with exactly ``delivered`` (n,) bool workers:
        "rows" / "numeric" when a due job, or a group whose rows get no later chance, would not
        decode; None when everything due decodes."""
        masks: dict[int, list[np.ndarray]] = {}
        for job in self.due(plan.round):
            masks[job] = self._with(plan, delivered, job)
            why = self.job_status(job, masks[job])
            if why != "ok":
                return why
        for job, g, code in self.final_groups(plan.round):
            if job in masks:  # a due job: job_status checked all its groups already
                continue
            why = self.coded_status(code, self._with(plan, delivered, job)[g])
            if why != "ok":
                return why
        return None

    def decodes_with(self, plan: RoundPlan, delivered: np.ndarray) -> bool:
        """Would every due job (and every final group) decode if ``delivered`` workers arrive?"""
        return self.undecodable(plan, delivered) is None

    def commit(self, plan: RoundPlan, delivered: np.ndarray, declared: np.ndarray) -> list[int]:
        """Record the delivered mini-tasks; return the jobs that became decodable this round.

        Raises RuntimeError if a job misses its deadline (the master must never let this happen).
        """
        r = plan.round
        for i in np.flatnonzero(delivered):
            for t in plan.tasks[i]:
                self._masks(t.job)[t.group][t.chunk] = True
                self.ledger.append((r, int(i), t))
        self.declared.append(np.asarray(declared, dtype=bool).copy())
        self.reattempted.append(plan.reattempts)
        self._after_commit(plan, delivered)
        done = []
        for job in range(max(0, r - self.T), min(r, self.n_jobs - 1) + 1):
            if job not in self.decoded_at and self.job_ok(job, self._masks(job)):
                self.decoded_at[job] = r
                done.append(job)
        for job in self.due(r):
            raise RuntimeError(f"{self.name}: job {job} not decodable by its deadline round {r}")
        return done

    def _after_commit(self, plan: RoundPlan, delivered: np.ndarray) -> None:
        return None

    def _history(self, start: int, r: int, paper: bool) -> np.ndarray:
        lo = max(0, start, r - self.model.lookback)
        rows = self.declared[lo:r]
        return np.array(rows, dtype=bool).reshape(len(rows), self.n)

    def model_ok(self, r: int, missing: np.ndarray, *, paper: bool = False) -> bool:
        """Model mode: the declared history plus ``missing`` stays within the straggler model."""
        return self.model.window_ok(self._history(0, r, paper), missing)

    def epoch_start(self, r: int, missing: np.ndarray) -> int:
        """Earliest round from which the run equals a fresh run (jobs independent: r - T + 1)."""
        return r - self.T + 1

    def restart_ok(self, r: int, missing: np.ndarray) -> bool:
        """Decodability-mode condition (b): the pattern since the epoch start is admissible on its
        own, so every in-flight job decodes under any admissible continuation (docs/sgc.md)."""
        e = self.epoch_start(r, missing)
        if e > r:
            return True
        return self.model.window_ok(self._history(e, r, False), missing)

    def decode(self, job: int, vec) -> np.ndarray:
        """Decode ``job`` from per-task vectors ``vec(task) -> np.ndarray`` (float64 sum of
        coefficient * vector over ``decode_coeffs(job)``)."""
        out: np.ndarray | None = None
        for t, c in self.decode_coeffs(job):
            v = c * np.asarray(vec(t), dtype=np.float64)
            out = v if out is None else out + v
        if out is None:
            raise RuntimeError(f"{self.name}: job {job} has no decoding coefficients")
        return out
