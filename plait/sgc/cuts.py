"""Cutting a round: when may the master stop waiting, and which workers become stragglers.

``why_not`` is the admission check: None when round ``plan.round`` may close with ``missing``
declared as stragglers, else the reason ("rows": a due job or a final coded group would lack
rows; "numeric": it would have them but its decoding is ill-conditioned, so the master waits
for more; "model": the straggler model (model mode) or the pattern since the epoch start
(decodability mode) would be violated). Admission uses the code's own decoder, so a round it
accepts always decodes. Two cuts with identical decisions: ``cut_from_times`` (every arrival
known: binary search) and ``cut_online`` (arrivals one at a time: Ray, replay).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np

from plait.sgc.schemes.base import RoundPlan, Scheme


@dataclass(slots=True, kw_only=True)
class MasterConfig:
    """How rounds are cut."""

    mu: float = 1.0  # cut at (1 + mu) times the fastest arrival
    cut: Literal["paper", "earliest"] = "earliest"
    admissibility: Literal["model", "decodable"] = "decodable"
    exemption: bool = False  # SR-SGC: the authors' exemption rule in model mode
    counting: bool = False  # coded groups decode iff <= s rows are missing (authors' simulator)

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
    return MasterConfig(mu=mu, cut="paper", admissibility="model", exemption=True, counting=True)


def plait_rules(mu: float = 1.0) -> MasterConfig:
    return MasterConfig(mu=mu, cut="earliest", admissibility="decodable")


class Cut(NamedTuple):
    close: float  # relative close time (the round's duration)
    delivered: np.ndarray  # (n,) bool: workers whose results count
    wait_out: bool  # paper cut: waited for everyone
    extended: bool  # earliest cut: waited past t_cut
    reason: str | None  # why the missing set at t_cut was refused (None: closed at t_cut)


def why_not(scheme: Scheme, plan: RoundPlan, missing: np.ndarray, cfg: MasterConfig) -> str | None:
    """Why round ``plan.round`` may not close with ``missing`` (n,) bool (None: it may)."""
    why = scheme.undecodable(plan, ~missing)
    if why is not None:
        return why
    if cfg.admissibility == "model":
        ok = scheme.model_ok(plan.round, missing, paper=cfg.exemption)
    else:
        ok = scheme.restart_ok(plan.round, missing)
    return None if ok else "model"


def admissible(scheme: Scheme, plan: RoundPlan, missing: np.ndarray, cfg: MasterConfig) -> bool:
    """May round ``plan.round`` close with ``missing`` (n,) bool declared as stragglers?"""
    return why_not(scheme, plan, missing, cfg) is None


def cut_from_times(scheme: Scheme, plan: RoundPlan, rel: np.ndarray, cfg: MasterConfig) -> Cut:
    """Cut with every arrival time known (virtual clock). Binary search over the arrival prefix,
    valid because admissibility is monotone in the missing set (fewer missing never hurts).

    Args: rel (n,) relative arrival times, nan for idle workers.
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
        return Cut(float(t[-1]), ~missing_after(k_cut), False, False, None)
    reason = why_not(scheme, plan, missing_after(k_cut), cfg)
    if reason is None:
        return Cut(float(t_cut), ~missing_after(k_cut), False, False, None)
    if cfg.cut == "paper":
        return Cut(float(t[-1]), ~missing_after(len(t)), True, False, reason)
    lo, hi = k_cut + 1, len(t)  # hi is admissible (nobody missing)
    while lo < hi:
        mid = (lo + hi) // 2
        if admissible(scheme, plan, missing_after(mid), cfg):
            hi = mid
        else:
            lo = mid + 1
    return Cut(float(t[lo - 1]), ~missing_after(lo), False, True, reason)


class OnlineCut(NamedTuple):
    cut: Cut
    arrivals: np.ndarray  # (n,) seconds after start; inf = not seen; nan = idle
    payloads: dict  # worker -> its task vectors (None without a workload)
    dead: list[int]  # every worker death seen this round
    redispatched: int


def cut_online(scheme: Scheme, plan: RoundPlan, source, cfg: MasterConfig) -> OnlineCut:
    """Cut by consuming arrivals one at a time from ``source`` (Ray or a replayed trace).

    ``source.next(deadline)`` returns (worker, rel_time, payload, ok) or None when nothing
    arrives before ``deadline`` (relative); ``ok=False`` means the worker died (it counts as
    missing); ``source.redispatch(worker)`` re-sends a dead worker's tasks.
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

    def done(close: float, wait_out: bool, extended: bool, reason: str | None) -> OnlineCut:
        return OnlineCut(
            Cut(close, got | ~active, wait_out, extended, reason), arr, payloads, died, redispatched
        )

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
        return done(last, False, False, None)
    reason = why_not(scheme, plan, missing(), cfg)
    if reason is None:
        return done(t_cut, False, False, None)
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
    return done(now, wait_out, not wait_out, reason)
