"""Paired comparison on the virtual clock: every arm replays the same traces.

An arm is (scheme name, parameters, master rules). ``paired_comparison`` runs all arms on the
same seeded traces and returns per-arm runtimes, wait-outs, extended waits and measured loads;
``summarize`` adds mean/std, ratios against a baseline arm and paired per-seed differences.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plait.errors import UsageError
from plait.sgc.master import Master, MasterConfig, paper_rules, plait_rules
from plait.sgc.schemes import make_scheme
from plait.sgc.traces import Trace, gilbert_elliott_trace, iid_trace
from plait.sgc.verify import DecodeCheck
from plait.sgc.virtual import VirtualBackend, VirtualConfig

RULES = {
    "paper": paper_rules,
    "earliest-model": lambda mu=1.0: MasterConfig(
        mu=mu, cut="earliest", admissibility="model", exemption=True, counting=True
    ),
    "plait": plait_rules,
}


@dataclass(slots=True, kw_only=True)
class Arm:
    """One scheme with fixed parameters under one rule set."""

    scheme: str
    params: dict = field(default_factory=dict)
    rules: str = "plait"  # key of RULES

    def __post_init__(self) -> None:
        if self.rules not in RULES:
            raise ValueError(f"unknown rules {self.rules!r}; valid: {sorted(RULES)}")

    @property
    def label(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.scheme}({p})/{self.rules}" if p else f"{self.scheme}/{self.rules}"


def make_trace(kind: str, n: int, rounds: int, seed: int) -> Trace:
    """A generated trace ("ge" or "iid") of n workers x rounds, or the .npz file at ``kind``
    (whose own shape wins: callers compare it with what they need)."""
    if kind == "ge":
        return gilbert_elliott_trace(n, rounds, seed=seed)
    if kind == "iid":
        return iid_trace(n, rounds, seed=seed)
    if not Path(kind).is_file():
        raise UsageError(f"trace {kind!r} is not 'ge', 'iid' or an existing .npz trace file")
    return Trace.load(kind)


def run_arm(
    arm: Arm,
    trace: Trace,
    n_jobs: int,
    *,
    mu: float = 1.0,
    c0: float = 0.56,
    c1: float = 2.2013,
    log: list | None = None,
    verify: bool = False,
) -> dict:
    """Run one arm; ``verify`` decodes every job with random vectors (``DecodeCheck``) and adds
    ``decode_check`` (jobs, failed, worst relative error) to the result (None if approximate)."""
    sc = make_scheme(arm.scheme, trace.n, n_jobs, **arm.params)
    check = DecodeCheck(dim=8, seed=0) if verify and sc.exact else None
    on_job = None if check is None else (lambda j, g, r: check(sc, j))
    res = Master(RULES[arm.rules](mu)).run(
        sc, VirtualBackend(trace, VirtualConfig(c0=c0, c1=c1)), on_job=on_job
    )
    if log is not None:
        log.extend(dict(arm=arm.label, **rec) for rec in res.records())
        if hasattr(sc, "code"):
            log.append(dict(arm=arm.label, code=sc.code.conditioning()))
    return dict(
        runtime=res.total_time,
        wait_outs=res.wait_outs,
        extended=res.extended,
        load=float(sc.load()),
        measured_load=res.max_samples() / sc.job_size,
        rounds=len(res.rounds),
        numeric_waits=sum(lg.wait_reason == "numeric" for lg in res.rounds),
        decode_check=None if check is None else check.summary(),
        done=[res.job_done[j] for j in sorted(res.job_done)],
    )


def paired_comparison(
    arms: list[Arm],
    *,
    kind: str,
    n: int,
    n_jobs: int,
    rounds: int,
    seeds: list[int],
    mu: float = 1.0,
    c0: float = 0.56,
    c1: float = 2.2013,
    progress=None,
) -> dict:
    """Run every arm on the trace of every seed. Returns {label: [per-seed result dicts]}."""
    if not seeds:
        raise UsageError("a paired comparison needs at least one seed")
    out: dict[str, list[dict]] = {a.label: [] for a in arms}
    for seed in seeds:
        tr = make_trace(kind, n, rounds, seed)
        for a in arms:
            out[a.label].append(run_arm(a, tr, n_jobs, mu=mu, c0=c0, c1=c1))
            if progress is not None:
                progress()
    return out


def summarize(results: dict[str, list[dict]], baseline: str) -> dict[str, dict]:
    base = np.array([r["runtime"] for r in results[baseline]])
    table = {}
    for label, rs in results.items():
        t = np.array([r["runtime"] for r in rs])
        table[label] = dict(
            mean=float(t.mean()),
            std=float(t.std(ddof=1)) if len(t) > 1 else 0.0,
            ratio_vs_baseline=float(t.mean() / base.mean()),
            paired_diff_mean=float((t - base).mean()),
            wait_outs=float(np.mean([r["wait_outs"] for r in rs])),
            extended=float(np.mean([r["extended"] for r in rs])),
            load=rs[0]["load"],
            measured_load=rs[0]["measured_load"],
        )
    return table


def format_table(table: dict[str, dict], baseline: str) -> str:
    lines = [
        f"{'arm':44s} {'runtime (s)':>18s} {'x ' + baseline.split('/')[0]:>9s} {'wait-outs':>9s} "
        f"{'extended':>8s} {'load':>8s}"
    ]
    for label, r in sorted(table.items(), key=lambda kv: kv[1]["mean"]):
        lines.append(
            f"{label:44s} {r['mean']:9.1f} ± {r['std']:6.1f} {r['ratio_vs_baseline']:9.3f} "
            f"{r['wait_outs']:9.1f} {r['extended']:8.1f} {r['load']:8.5f}"
        )
    return "\n".join(lines)
