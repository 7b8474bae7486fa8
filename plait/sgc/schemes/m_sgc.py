"""M-SGC (multiplexed sequential gradient coding) for the (B, W, lambda)-bursty model.

A job's data: D1 (share (lam+1)(W-1)/Den, Den = B + (W-1)(lam+1)) split into n(W-1) uncoded
chunks, and D2 (share B/Den) split into B groups, each an (n, lam)-GC over n partitions. Worker i
computes D1 chunk i*(W-1)+m of job r-m in slot m = 0..W-2, and in D2 slot m = W-1..W-2+B either
re-does its earliest missing D1 chunk of job r-m or its coded row of D2 group m-W+2. One D1
chunk is exactly one D2 coded task, so every slot costs (lam+1)/(n Den) of a job.
Load (lam+1)(W-1+B)/(n Den), delay T = W-2+B.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from plait.sgc.codes import GradientCode
from plait.sgc.schemes.base import MiniTask, Scheme
from plait.sgc.schemes.simple import gc_pieces
from plait.sgc.stragglers import BurstyModel


class MSGC(Scheme):
    name = "m-sgc"

    def __init__(
        self,
        n: int,
        n_jobs: int,
        *,
        B: int,
        W: int,
        lam: int,
        unit: int = 1,
        code: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(n, n_jobs)
        self._model = BurstyModel(B=B, W=W, lam=lam)  # validates 1 <= B < W and lambda >= 0
        if not 0 <= lam < n:
            raise ValueError(f"M-SGC needs 0 <= lambda < n, got lambda={lam}, n={n}")
        if unit < 1:
            raise ValueError(f"unit must be >= 1, got {unit}")
        self.B, self.W, self.lam = B, W, lam
        self.T = W - 2 + B
        self.den = B + (W - 1) * (lam + 1)
        self.unit = unit
        self.job_size = n * self.den * unit
        self.code = GradientCode(n=n, s=lam, kind=code, seed=seed)

    @property
    def model(self):
        return self._model

    def group_sizes(self) -> list[int]:
        return [self.n * (self.W - 1)] + [self.n] * self.B

    def _assign(self, r: int) -> list[list[MiniTask]]:
        n, W = self.n, self.W
        out: list[list[MiniTask]] = [[] for _ in range(n)]
        for j in range(min(r, self.n_jobs - 1), max(0, r - self.T) - 1, -1):
            m = r - j
            if m <= W - 2:
                for i in range(n):
                    out[i].append(MiniTask(j, 0, i * (W - 1) + m))
                continue
            miss = ~self._masks(j)[0].reshape(n, W - 1)  # (n, W-1) D1 chunks still missing
            has = np.asarray(miss.any(axis=1))
            first = np.asarray(miss.argmax(axis=1))
            g = m - W + 2
            for i in range(n):
                out[i].append(
                    MiniTask(j, 0, i * (W - 1) + int(first[i])) if has[i] else MiniTask(j, g, i)
                )
        return out

    def _is_reattempt(self, r: int, t: MiniTask) -> bool:
        return t.group == 0 and r - t.job >= self.W - 1

    def pieces(self, task: MiniTask) -> list[tuple[int, int, float]]:
        u, lam = self.unit, self.lam
        if task.group == 0:
            c = task.chunk
            return [(c * (lam + 1) * u, (c + 1) * (lam + 1) * u, 1.0)]
        off = self.n * (self.W - 1) * (lam + 1) * u + (task.group - 1) * self.n * u
        return gc_pieces(self.code, task.chunk, off, u)

    def job_status(self, job: int, got: list[np.ndarray]) -> str:
        if not got[0].all():
            return "rows"
        for mask in got[1:]:
            why = self.coded_status(self.code, mask)
            if why != "ok":
                return why
        return "ok"

    def final_groups(self, r: int) -> list[tuple[int, int, GradientCode]]:
        """The D2 group of every job in its D2 slots this round: its rows get no later chance."""
        out = []
        for j in range(max(0, r - self.T), min(r, self.n_jobs - 1) + 1):
            if r - j >= self.W - 1:
                out.append((j, r - j - self.W + 2, self.code))
        return out

    def decode_coeffs(self, job: int) -> list[tuple[MiniTask, float]]:
        got = self.got[job]
        out = [(MiniTask(job, 0, c), 1.0) for c in range(self.n * (self.W - 1))]
        for g in range(1, self.B + 1):
            a = self.code.decode_vector(got[g])
            out += [(MiniTask(job, g, int(i)), float(a[i])) for i in np.flatnonzero(a)]
        return out

    def load(self) -> Fraction:
        return Fraction((self.lam + 1) * (self.W - 1 + self.B), self.n * self.den)
