"""The master: rounds of dispatch, collection in arrival order, cut, decode, apply.

Cut policies (``MasterConfig``):
- ``paper``: wait until (1 + mu) * t_first; if the missing set is inadmissible wait for all.
- ``earliest``: from (1 + mu) * t_first on, close at the first arrival after which the missing
  set is admissible. Never later than ``paper`` given the same state (at t_max nobody is missing).
Admissibility: ``model`` (history + missing stays in the scheme's straggler model; the paper's
rule) or ``decodable`` ((a) every due job decodes now and (b) the pattern since the scheme's epoch
start is admissible on its own, so in-flight jobs decode under any admissible continuation).
Every mode also requires (a): a due job is never left undecodable. No wall clock in here: times
come from the backend (virtual or real).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from plait.sgc.schemes.base import RoundPlan, Scheme


@dataclass(slots=True, kw_only=True)
class MasterConfig:
    """How rounds are cut."""

    mu: float = 1.0  # cut at (1 + mu) times the fastest arrival
    cut: Literal["paper", "earliest"] = "earliest"
    admissibility: Literal["model", "decodable"] = "decodable"
    exemption: bool = False  # SR-SGC: the authors' exemption rule in model mode

    def __post_init__(self) -> None:
        if not self.mu >= 0:
            raise ValueError(f"mu must be >= 0, got {self.mu}")
        if self.cut not in ("paper", "earliest"):
            raise ValueError(f"cut must be 'paper' or 'earliest', got {self.cut!r}")
        if self.admissibility not in ("model", "decodable"):
            raise ValueError(
                f"admissibility must be 'model' or 'decodable', got {self.admissibility!r}"
            )


def paper_rules(mu: float = 1.0) -> MasterConfig:
    return MasterConfig(mu=mu, cut="paper", admissibility="model", exemption=True)


def plait_rules(mu: float = 1.0) -> MasterConfig:
    return MasterConfig(mu=mu, cut="earliest", admissibility="decodable")


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
                )
            )
        return out


def admissible(scheme: Scheme, plan: RoundPlan, missing: np.ndarray, cfg: MasterConfig) -> bool:
    """May round ``plan.round`` close with ``missing`` (n,) bool declared as stragglers?"""
    if not scheme.decodes_with(plan, ~missing):
        return False
    if cfg.admissibility == "model":
        return scheme.model_ok(plan.round, missing, paper=cfg.exemption)
    return scheme.restart_ok(plan.round, missing)


def cut_from_times(
    scheme: Scheme, plan: RoundPlan, rel: np.ndarray, cfg: MasterConfig
) -> tuple[float, np.ndarray, bool, bool]:
    """Cut with every arrival time known (virtual clock). Binary search over the arrival prefix,
    valid because admissibility is monotone in the missing set (fewer missing never hurts).

    Args: rel (n,) relative arrival times, nan for idle workers.
    Returns: (close time, delivered mask, wait_out, extended).
    """
    active = ~np.isnan(rel)
    order = np.flatnonzero(active)[np.argsort(rel[active], kind="stable")]
    t = rel[order]
    t_cut = (1.0 + cfg.mu) * t[0]
    k_cut = int(np.searchsorted(t, t_cut, side="right"))

    def missing_after(k: int) -> np.ndarray:
        miss = active.copy()
        miss[order[:k]] = False
        return miss

    if k_cut == len(t):
        return float(t[-1]), ~missing_after(k_cut), False, False
    if admissible(scheme, plan, missing_after(k_cut), cfg):
        return float(t_cut), ~missing_after(k_cut), False, False
    if cfg.cut == "paper":
        return float(t[-1]), ~missing_after(len(t)), True, False
    lo, hi = k_cut + 1, len(t)  # hi is admissible (nobody missing)
    while lo < hi:
        mid = (lo + hi) // 2
        if admissible(scheme, plan, missing_after(mid), cfg):
            hi = mid
        else:
            lo = mid + 1
    return float(t[lo - 1]), ~missing_after(lo), False, True


def cut_online(
    scheme: Scheme, plan: RoundPlan, source, cfg: MasterConfig
) -> tuple[float, np.ndarray, bool, bool, np.ndarray, dict, list[int], int]:
    """Cut by consuming arrivals one at a time from ``source`` (Ray or a replayed trace).

    ``source.next(deadline)`` returns (worker, rel_time, payload, ok) or None when nothing
    arrives before ``deadline`` (relative); ``ok=False`` means the worker died (it counts as
    missing); ``source.redispatch(worker)`` re-sends a dead worker's tasks.
    Returns: (close, delivered, wait_out, extended, arrivals, payloads, dead, redispatched).
    """
    n = scheme.n
    active = np.array([bool(ts) for ts in plan.tasks])
    got = np.zeros(n, dtype=bool)
    arr = np.where(active, np.inf, np.nan)
    payloads: dict[int, object] = {}
    dead: list[int] = []  # dead and not yet re-sent
    died: list[int] = []  # every death seen this round (for the log)
    redispatched = 0

    def take(ev) -> float:
        w, t, payload, ok = ev
        if ok:
            got[w], arr[w] = True, t
            payloads[w] = payload
        else:
            dead.append(w)
            died.append(w)
        return t

    def missing() -> np.ndarray:
        return active & ~got

    t_first = None
    while t_first is None:  # 1) first successful arrival sets the cut
        ev = source.next(np.inf)
        t = take(ev)
        if ev[3]:
            t_first = t
        elif not (active & ~got & ~np.isin(np.arange(n), dead)).any():
            break
    t_cut = (1.0 + cfg.mu) * (t_first if t_first is not None else 0.0)
    last = t_first or 0.0
    while missing().any():  # 2) everything that arrives before the cut
        ev = source.next(t_cut)
        if ev is None:
            break
        last = max(last, take(ev))
    if not missing().any():
        return last, got | ~active, False, False, arr, payloads, died, redispatched
    if admissible(scheme, plan, missing(), cfg):
        return t_cut, got | ~active, False, False, arr, payloads, died, redispatched
    wait_out = cfg.cut == "paper"
    now = t_cut
    while True:  # 3) keep collecting; re-send to dead workers whose result is needed
        for w in [d for d in dead if not got[d]]:
            dead.remove(w)
            source.redispatch(w)
            redispatched += 1
        ev = source.next(np.inf)
        now = max(now, take(ev))
        if not missing().any() or (not wait_out and admissible(scheme, plan, missing(), cfg)):
            break
    return now, got | ~active, wait_out, not wait_out, arr, payloads, died, redispatched


class Master:
    """Runs a scheme to completion on a backend; optionally decodes real gradients."""

    def __init__(self, config: MasterConfig | None = None) -> None:
        self.config = config or MasterConfig()

    def run(self, scheme: Scheme, backend, *, on_job=None, progress=None) -> RunResult:
        """Args: on_job(job, gradient | None, round) is called when a job decodes (gradient is
        the decoded float64 vector when the backend returns payloads). Returns a RunResult."""
        cfg = self.config
        logs: list[RoundLog] = []
        done: dict[int, float] = {}
        store: dict[int, dict] = {}  # job -> {task: vector}
        errors: list[float] = []
        now = 0.0
        for r in range(scheme.n_rounds):
            # 1) plan and dispatch
            plan = scheme.plan(r)
            if plan.empty:
                decoded = scheme.commit(plan, np.ones(scheme.n, bool), np.zeros(scheme.n, bool))
                for j in decoded:
                    done[j] = now
                continue
            src = backend.dispatch(plan, now, scheme)
            # 2) collect in arrival order and cut
            if getattr(src, "times", None) is not None:
                close, delivered, wo, ext = cut_from_times(scheme, plan, src.times, cfg)
                arr, payloads, red = src.times, src.payloads(delivered), 0
                dead: list[int] = []
            else:
                close, delivered, wo, ext, arr, payloads, dead, red = cut_online(
                    scheme, plan, src, cfg
                )
            src.cancel()
            declared = ~delivered
            # 3) commit, decode, apply
            for w, vecs in payloads.items():
                if vecs is not None and delivered[w]:
                    for t, v in zip(plan.tasks[w], vecs):
                        store.setdefault(t.job, {})[t] = v
            decoded = scheme.commit(plan, delivered, declared)
            t0 = time.perf_counter()
            for j in decoded:
                grad = None
                if j in store:
                    grad = scheme.decode(j, store.pop(j).__getitem__)
                    if not scheme.exact and hasattr(backend, "true_grad"):
                        ref = backend.true_grad(j, scheme)
                        errors.append(
                            float(np.linalg.norm(grad - ref))
                            / max(1e-300, float(np.linalg.norm(ref)))
                        )
                if on_job is not None:
                    on_job(j, grad, r)
            dec_s = time.perf_counter() - t0
            now += close
            for j in decoded:
                done[j] = now
            logs.append(
                RoundLog(
                    round=r,
                    start=now - close,
                    arrivals=np.asarray(arr, float),
                    t_cut=(1 + cfg.mu) * float(np.nanmin(arr))
                    if np.isfinite(np.nanmin(arr))
                    else float("nan"),
                    close=close,
                    stragglers=[int(i) for i in np.flatnonzero(declared)],
                    wait_out=wo,
                    extended=ext,
                    reattempts=plan.reattempts,
                    samples=plan.samples,
                    decoded=decoded,
                    decode_s=dec_s,
                    redispatched=red,
                    dead=list(dead),
                )
            )
            if progress is not None:
                progress(r)
        return RunResult(scheme=scheme.name, rounds=logs, job_done=done, grad_error=errors)
