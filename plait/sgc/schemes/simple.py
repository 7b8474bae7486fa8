"""Round-local schemes (T = 0): uncoded (wait for all), ignore-stragglers (approximate), (n, s)-GC."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import numpy as np

from plait.sgc.codes import GradientCode
from plait.sgc.schemes.base import MiniTask, Scheme
from plait.sgc.stragglers import PerRoundModel


class OneJobPerRound:
    """Round r serves job r only: worker i gets chunk i of it (one group of n). Shared by
    Uncoded (and IgnoreStragglers) and GC; `_model` is the scheme's straggler model."""

    n: int
    n_jobs: int
    _model: PerRoundModel

    @property
    def model(self):
        return self._model

    def group_sizes(self) -> list[int]:
        return [self.n]

    def _assign(self, r: int) -> list[list[MiniTask]]:
        if r >= self.n_jobs:
            return [[] for _ in range(self.n)]
        return [[MiniTask(r, 0, i)] for i in range(self.n)]


class Uncoded(OneJobPerRound, Scheme):
    """Worker i computes partition i of job r in round r; the job needs all n partitions."""

    name = "uncoded"

    def __init__(self, n: int, n_jobs: int, *, unit: int = 1) -> None:
        super().__init__(n, n_jobs)
        if unit < 1:
            raise ValueError(f"unit (samples per partition) must be >= 1, got {unit}")
        self.unit = unit
        self.job_size = n * unit
        self._model = PerRoundModel(s=0)

    def pieces(self, task: MiniTask) -> list[tuple[int, int, float]]:
        return [(task.chunk * self.unit, (task.chunk + 1) * self.unit, 1.0)]

    def job_status(self, job: int, got: list[np.ndarray]) -> str:
        return "ok" if got[0].all() else "rows"

    def decode_coeffs(self, job: int) -> list[tuple[MiniTask, float]]:
        return [(MiniTask(job, 0, i), 1.0) for i in range(self.n)]

    def load(self) -> Fraction:
        return Fraction(1, self.n)


class IgnoreStragglers(Uncoded):
    """Uncoded tasks, but the round closes at the cut and the gradient is rescaled from whoever
    arrived: g ~ (n / |R|) * sum_{i in R} g_i. Approximate; a lower bound on time."""

    name = "ignore"
    exact = False

    def job_status(self, job: int, got: list[np.ndarray]) -> str:
        return "ok" if got[0].any() else "rows"

    def model_ok(self, r: int, missing: np.ndarray, *, paper: bool = False) -> bool:
        return bool((~missing).any())

    def restart_ok(self, r: int, missing: np.ndarray) -> bool:
        return True

    def decode_coeffs(self, job: int) -> list[tuple[MiniTask, float]]:
        rows = np.flatnonzero(self.got[job][0])
        return [(MiniTask(job, 0, int(i)), self.n / len(rows)) for i in rows]


class GCDecoding:
    """One (n, s) gradient code over a single group: pieces, decodability, decoding coefficients
    and load, shared by GC and SR-SGC (whose jobs are each one GC-coded gradient)."""

    code: GradientCode
    unit: int
    s: int
    n: int
    got: dict
    coded_status: Callable[[GradientCode, np.ndarray], str]

    def pieces(self, task: MiniTask) -> list[tuple[int, int, float]]:
        return gc_pieces(self.code, task.chunk, 0, self.unit)

    def job_status(self, job: int, got: list[np.ndarray]) -> str:
        return self.coded_status(self.code, got[0])

    def decode_coeffs(self, job: int) -> list[tuple[MiniTask, float]]:
        a = self.code.decode_vector(self.got[job][0])
        return [(MiniTask(job, 0, int(i)), float(a[i])) for i in np.flatnonzero(a)]

    def load(self) -> Fraction:
        return Fraction(self.s + 1, self.n)


class GC(OneJobPerRound, GCDecoding, Scheme):
    """(n, s) gradient coding every round: job r is decodable from any n - s rows (FRC: from one
    row per group). Load (s + 1) / n, T = 0."""

    name = "gc"

    def __init__(
        self, n: int, n_jobs: int, *, s: int, unit: int = 1, code: str = "auto", seed: int = 0
    ) -> None:
        super().__init__(n, n_jobs)
        if unit < 1:
            raise ValueError(f"unit (samples per partition) must be >= 1, got {unit}")
        self.code = GradientCode(n=n, s=s, kind=code, seed=seed)
        self.s = s
        self.unit = unit
        self.job_size = n * unit
        self._model = PerRoundModel(s=s)


def gc_pieces(code: GradientCode, row: int, offset: int, unit: int) -> list[tuple[int, int, float]]:
    """Sample ranges of coded row ``row``: partition p covers [offset + p*unit, offset + (p+1)*unit)."""
    return [
        (offset + p * unit, offset + (p + 1) * unit, float(code.B[row, p]))
        for p in code.support(row)
    ]
