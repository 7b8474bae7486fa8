"""Ray backend: one async actor per worker, arrivals in order via ``ray.wait``, cancellation.

Each round the master sends every active worker its mini-tasks (sample ranges and coefficients)
and the parameters of the models involved (one ``ray.put``). The actor awaits an injected
``asyncio.sleep(delay)`` (the trace's straggle), then computes. When the master cuts the round it
``ray.cancel``s outstanding calls: the sleeping coroutine is cancelled, so a straggler never
delays its next round (async actors run calls concurrently). A dead actor's call fails: it counts
as missing; if its result is needed the master re-dispatches to the restarted actor
(``max_restarts=-1``). ``ray`` is imported only here, and lazily.
"""

from __future__ import annotations

import time

import numpy as np

from plait.sgc.schemes.base import RoundPlan, Scheme
from plait.sgc.traces import Trace

_ACTOR = None


def _actor_class():
    global _ACTOR
    if _ACTOR is None:
        import asyncio

        import ray

        @ray.remote
        class GradWorker:
            def __init__(self, workload) -> None:
                import os

                os.environ.setdefault("OMP_NUM_THREADS", "1")
                self.workload = workload  # torch is imported by the workload only if it needs it

            async def run(self, items, params, delay: float):
                await asyncio.sleep(delay)  # injected straggle; cancellable
                return [
                    self.workload.piece_vector(
                        job, size, pieces, None if params is None else params[m]
                    )
                    for job, m, size, pieces in items
                ]

            def pid(self) -> int:
                import os

                return os.getpid()

        _ACTOR = GradWorker
    return _ACTOR


class _RaySource:
    def __init__(
        self, backend: RayBackend, plan: RoundPlan, scheme: Scheme, delays: np.ndarray
    ) -> None:
        import ray

        self.ray, self.b, self.plan, self.scheme = ray, backend, plan, scheme
        self.times = None
        jobs = {t.job for ts in plan.tasks for t in ts}
        snap = backend.workload.snapshot(jobs)
        self.params_ref = ray.put(snap) if snap is not None else None
        self.t0 = time.perf_counter()
        self.pending: dict = {}
        for w, ts in enumerate(plan.tasks):
            if ts:
                self._send(w, float(delays[w]))

    def _items(self, w: int):
        wl = self.b.workload
        model = getattr(wl, "model_of", lambda j: 0)
        return [
            (t.job, model(t.job), self.scheme.job_size, self.scheme.pieces(t))
            for t in self.plan.tasks[w]
        ]

    def _send(self, w: int, delay: float) -> None:
        ref = self.b.actors[w].run.remote(self._items(w), self.params_ref, delay)
        self.pending[ref] = w

    def next(self, deadline: float):
        if not self.pending:
            return None
        left = deadline - (time.perf_counter() - self.t0)
        if np.isfinite(deadline) and left <= 0:
            left = 0.0
        ready, _ = self.ray.wait(
            list(self.pending), num_returns=1, timeout=None if not np.isfinite(deadline) else left
        )
        if not ready:
            return None
        ref = ready[0]
        w = self.pending.pop(ref)
        t = time.perf_counter() - self.t0
        try:
            return (w, t, self.ray.get(ref), True)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.ActorUnavailableError):
            return (w, t, None, False)

    def redispatch(self, w: int) -> None:
        self._send(w, 0.0)

    def cancel(self) -> None:
        for ref in list(self.pending):
            self.ray.cancel(ref)
        self.pending.clear()


class RayBackend:
    """Ray actors on this machine (``ray.init(num_cpus=...)``) or a cluster (``address=``)."""

    def __init__(
        self,
        n: int,
        trace: Trace,
        workload,
        *,
        address: str | None = None,
        num_cpus: int = 2,
        cpus_per_actor: float = 0.1,
        time_scale: float = 1.0,
        faults: dict[int, list[int]] | None = None,
    ) -> None:
        import ray

        if n < 1:
            raise ValueError(f"need n >= 1 actors, got {n}")
        if trace.n != n:
            raise ValueError(
                f"trace has {trace.n} workers but the backend has n={n}; regenerate the trace"
            )
        if not ray.is_initialized():
            if address:
                ray.init(address=address)
            else:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        self.trace, self.workload, self.time_scale = trace, workload, time_scale
        self.faults = dict(faults or {})  # round -> actors to kill mid-call (fault injection)
        self.fault_after = 0.2  # seconds after dispatch at which injected faults fire
        cls = _actor_class()
        self.actors = [
            cls.options(
                num_cpus=cpus_per_actor, max_restarts=-1, max_task_retries=0, max_concurrency=64
            ).remote(workload)
            for _ in range(n)
        ]
        ray.get([a.pid.remote() for a in self.actors])  # wait until all actors are up

    def dispatch(self, plan: RoundPlan, now: float, scheme: Scheme) -> _RaySource:
        self.trace.check(scheme.n, plan.round + 1)
        src = _RaySource(self, plan, scheme, self.trace.delays[:, plan.round] * self.time_scale)
        for w in self.faults.pop(plan.round, []):
            import threading

            threading.Timer(self.fault_after, self.kill, args=(w,)).start()
        return src

    def kill(self, w: int) -> None:
        """Kill actor w (it restarts); its in-flight call fails and counts as missing."""
        import ray

        ray.kill(self.actors[w], no_restart=False)

    def true_grad(self, job: int, scheme: Scheme) -> np.ndarray:
        return self.workload.true_grad(job, scheme)

    def shutdown(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a, no_restart=True)
