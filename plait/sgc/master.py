"""The master: rounds of dispatch, collection in arrival order, cut, decode, apply.

Cut policies (``MasterConfig``):
- ``paper``: wait until (1 + mu) * t_first; if the missing set is inadmissible wait for all.
- ``earliest``: from (1 + mu) * t_first on, close at the first arrival after which the missing
  set is admissible. Never later than ``paper`` given the same state (at t_max nobody is missing).
Admissibility: ``model`` (history + missing stays in the scheme's straggler model; the paper's
rule) or ``decodable`` ((a) every due job decodes now and (b) the pattern since the scheme's epoch
start is admissible on its own, so in-flight jobs decode under any admissible continuation).
Every mode also requires (a): a due job (and a coded group whose rows get no later chance) is
never left undecodable, judged by the code's own decoder. ``counting`` (the paper's rules) judges
coded groups by counting rows, as the authors' simulator does. The cuts are in
``plait.sgc.cuts`` (with ``MasterConfig``, the policy they apply). No wall clock in here: times come from the backend (virtual or real).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from plait.sgc.cuts import (
    MasterConfig,
    admissible,
    cut_from_times,
    cut_online,
    paper_rules,
    plait_rules,
    why_not,
)
from plait.sgc.schemes.base import Scheme


@dataclass(slots=True)
class RoundLog:
    round: int
    start: float  # absolute time the round was dispatched
    arrivals: np.ndarray  # (n,) seconds after start; inf = not seen before the cut; nan = idle
    t_cut: float  # (1 + mu) * t_first, relative
    close: float  # relative close time (the round's duration)
    stragglers: list[int]
    wait_out: bool  # paper rule waited for everyone
    extended: bool  # earliest rule waited past t_cut
    reattempts: int
    samples: np.ndarray  # (n,) samples per worker
    decoded: list[int]
    decode_s: float
    redispatched: int = 0
    dead: list[int] = field(default_factory=list)
    wait_reason: str | None = None  # why the cut at t_cut was refused: rows | numeric | model


@dataclass(slots=True)
class RunResult:
    scheme: str
    rounds: list[RoundLog]
    job_done: dict[int, float]  # job -> absolute completion time
    grad_error: list[float] = field(default_factory=list)  # ignore-stragglers relative error

    @property
    def total_time(self) -> float:
        return max(self.job_done.values()) if self.job_done else 0.0

    @property
    def wait_outs(self) -> int:
        return sum(lg.wait_out for lg in self.rounds)

    @property
    def extended(self) -> int:
        return sum(lg.extended for lg in self.rounds)

    def max_samples(self) -> int:
        return int(max(lg.samples.max() for lg in self.rounds))

    def records(self) -> list[dict]:
        """Per-round log as JSON-ready dicts (arrivals: null = not seen before the cut / idle)."""
        out = []
        for lg in self.rounds:
            arr = [None if not np.isfinite(a) else round(float(a), 6) for a in lg.arrivals]
            out.append(
                dict(
                    round=lg.round,
                    start=lg.start,
                    t_cut=lg.t_cut,
                    close=lg.close,
                    arrivals=arr,
                    stragglers=lg.stragglers,
                    wait_out=lg.wait_out,
                    extended=lg.extended,
                    reattempts=lg.reattempts,
                    samples=lg.samples.tolist(),
                    decoded=lg.decoded,
                    decode_s=lg.decode_s,
                    redispatched=lg.redispatched,
                    dead=lg.dead,
                    wait_reason=lg.wait_reason,
                )
            )
        return out


class Master:
    """Runs a scheme to completion on a backend; optionally decodes real gradients."""

    def __init__(self, config: MasterConfig | None = None) -> None:
        self.config = config or MasterConfig()

    def run(self, scheme: Scheme, backend, *, on_job=None, progress=None) -> RunResult:
        """Args: on_job(job, gradient | None, round) is called when a job decodes (gradient is
        the decoded float64 vector when the backend returns payloads). Returns a RunResult."""
        scheme.counting = self.config.counting
        res = RunResult(scheme=scheme.name, rounds=[], job_done={})
        store: dict[int, dict] = {}  # job -> {task: vector}
        now = 0.0
        for r in range(scheme.n_rounds):
            plan = scheme.plan(r)
            if plan.empty:
                decoded = scheme.commit(plan, np.ones(scheme.n, bool), np.zeros(scheme.n, bool))
                for j in decoded:
                    res.job_done[j] = now
                continue
            log = self._round(scheme, backend, plan, now, store, res, on_job)
            now += log.close
            for j in log.decoded:
                res.job_done[j] = now
            res.rounds.append(log)
            if progress is not None:
                progress(r)
        return res

    def _round(self, scheme, backend, plan, now, store, res: RunResult, on_job) -> RoundLog:
        """Dispatch, cut, commit and decode one round; returns its log."""
        cfg = self.config
        src = backend.dispatch(plan, now, scheme)
        dead: list[int]
        if getattr(src, "times", None) is not None:
            cut = cut_from_times(scheme, plan, src.times, cfg)
            arr, payloads, red, dead = src.times, src.payloads(cut.delivered), 0, []
        else:
            cut, arr, payloads, dead, red = cut_online(scheme, plan, src, cfg)
        src.cancel()
        declared = ~cut.delivered
        for w, vecs in payloads.items():
            if vecs is not None and cut.delivered[w]:
                for t, v in zip(plan.tasks[w], vecs):
                    if t.job not in scheme.decoded_at:  # late rows of a decoded job: unused
                        store.setdefault(t.job, {})[t] = v
        decoded = scheme.commit(plan, cut.delivered, declared)
        t0 = time.perf_counter()
        for j in decoded:
            grad = None
            if j in store:
                grad = scheme.decode(j, store.pop(j).__getitem__)
                if not scheme.exact and hasattr(backend, "true_grad"):
                    ref = backend.true_grad(j, scheme)
                    res.grad_error.append(
                        float(np.linalg.norm(grad - ref)) / max(1e-300, float(np.linalg.norm(ref)))
                    )
            if on_job is not None:
                on_job(j, grad, plan.round)
        first = float(np.nanmin(arr))
        return RoundLog(
            round=plan.round,
            start=now,
            arrivals=np.asarray(arr, float),
            t_cut=(1 + cfg.mu) * first if np.isfinite(first) else float("nan"),
            close=cut.close,
            stragglers=[int(i) for i in np.flatnonzero(declared)],
            wait_out=cut.wait_out,
            extended=cut.extended,
            reattempts=plan.reattempts,
            samples=plan.samples,
            decoded=decoded,
            decode_s=time.perf_counter() - t0,
            redispatched=red,
            dead=list(dead),
            wait_reason=cut.reason,
        )


# MasterConfig, paper_rules, plait_rules and the cuts are defined in plait.sgc.cuts
__all__ = [
    "Master",
    "MasterConfig",
    "RoundLog",
    "RunResult",
    "admissible",
    "cut_from_times",
    "cut_online",
    "paper_rules",
    "plait_rules",
    "why_not",
]
