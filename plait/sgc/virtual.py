"""Virtual-clock backend: latency = c0 + c1 * (samples / job_size) + delays[i, r]; no sleeps.

``dispatch`` returns a source with every arrival time known (``times``) so the master can cut by
binary search; ``OnlineReplay`` serves the same arrivals one by one (the twin used by tests and
by the Ray-equivalence check). Optional ``workload`` computes real per-task vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plait.sgc.schemes.base import RoundPlan, Scheme
from plait.sgc.traces import Trace


@dataclass(slots=True, kw_only=True)
class VirtualConfig:
    c0: float = 0.0  # fixed per-round cost (seconds)
    c1: float = 2.2  # seconds per unit of normalized load (reference/sgc.md section 5.2)
    online: bool = False  # serve arrivals one by one (the twin of the binary-search cut)

    def __post_init__(self) -> None:
        if self.c0 < 0 or self.c1 < 0:
            raise ValueError(f"compute costs must be >= 0, got c0={self.c0}, c1={self.c1}")


class _Source:
    def __init__(self, times: np.ndarray, plan: RoundPlan, workload, scheme: Scheme, online: bool):
        self.plan, self.workload, self.scheme = plan, workload, scheme
        self._t = times
        self.times = None if online else times
        act = np.flatnonzero(~np.isnan(times))
        self._queue = list(act[np.argsort(times[act], kind="stable")])

    def _vecs(self, w: int):
        if self.workload is None:
            return None
        return [self.workload.task_vector(t, self.scheme) for t in self.plan.tasks[w]]

    def payloads(self, delivered: np.ndarray) -> dict:
        return {int(w): self._vecs(int(w)) for w in np.flatnonzero(delivered) if self.plan.tasks[w]}

    def next(self, deadline: float):
        if not self._queue or self._t[self._queue[0]] > deadline:
            return None
        w = int(self._queue.pop(0))
        return (w, float(self._t[w]), self._vecs(w), True)

    def redispatch(self, w: int) -> None:  # virtual workers never die
        raise RuntimeError("virtual workers cannot die")

    def cancel(self) -> None:
        self._queue.clear()


class VirtualBackend:
    """Replays a trace. ``workload`` (optional) has ``task_vector(task, scheme)``."""

    def __init__(self, trace: Trace, config: VirtualConfig | None = None, workload=None) -> None:
        self.trace = trace
        self.config = config or VirtualConfig()
        self.workload = workload

    def dispatch(self, plan: RoundPlan, now: float, scheme: Scheme) -> _Source:
        if plan.round >= self.trace.rounds or self.trace.n != scheme.n:
            self.trace.check(scheme.n, scheme.n_rounds)
        cfg = self.config
        active = np.array([bool(ts) for ts in plan.tasks])
        lat = cfg.c0 + cfg.c1 * plan.samples / scheme.job_size + self.trace.delays[:, plan.round]
        times = np.where(active, lat, np.nan)
        return _Source(times, plan, self.workload, scheme, cfg.online)

    def true_grad(self, job: int, scheme: Scheme) -> np.ndarray:
        return self.workload.true_grad(job, scheme)


class SyntheticWorkload:
    """Per-sample integer vectors: sample k of job j has a seeded random vector; a task's vector
    is sum(coeff * sum of its samples). The true gradient is the sum over all samples."""

    def __init__(self, dim: int = 3, seed: int = 0) -> None:
        self.dim, self.seed = dim, seed
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def samples(self, job: int, size: int) -> np.ndarray:
        key = (job, size)
        if key not in self._cache:
            rng = np.random.default_rng([self.seed, job])
            self._cache[key] = rng.integers(-1000, 1000, size=(size, self.dim)).astype(np.float64)
        return self._cache[key]

    def snapshot(self, jobs) -> None:
        return None

    def piece_vector(self, job: int, size: int, pieces, params=None) -> np.ndarray:
        X = self.samples(job, size)
        return sum(c * X[a:b].sum(axis=0) for a, b, c in pieces)

    def task_vector(self, task, scheme: Scheme) -> np.ndarray:
        return self.piece_vector(task.job, scheme.job_size, scheme.pieces(task))

    def true_grad(self, job: int, scheme: Scheme) -> np.ndarray:
        return self.samples(job, scheme.job_size).sum(axis=0)
