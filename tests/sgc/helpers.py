"""Shared helpers: run a scheme on a straggler pattern with real (synthetic) vectors and check."""

from __future__ import annotations

import itertools

import numpy as np

from plait.sgc.master import Master, MasterConfig
from plait.sgc.schemes import make_scheme
from plait.sgc.traces import pattern_to_trace
from plait.sgc.virtual import SyntheticWorkload, VirtualBackend, VirtualConfig


def admissible_patterns(model, n: int, rounds: int):
    """Every (rounds, n) pattern the model admits, by depth-first search (prefix-closed)."""
    rows = [np.array(b, dtype=bool) for b in itertools.product([False, True], repeat=n)]

    def rec(prefix: list[np.ndarray]):
        if len(prefix) == rounds:
            yield np.array(prefix, dtype=bool).reshape(rounds, n)
            return
        prev = np.array(prefix[-model.lookback :] if model.lookback else [], dtype=bool).reshape(
            -1, n
        )
        for row in rows:
            if model.window_ok(prev, row):
                yield from rec(prefix + [row])

    yield from rec([])


def run_pattern(
    name: str, n: int, jobs: int, params: dict, pattern: np.ndarray, cfg: MasterConfig, **kw
):
    """Run with stragglers exactly where ``pattern`` (R, n) is True; return (scheme, result, errs)."""
    sc = make_scheme(name, n, jobs, **params)
    R = sc.n_rounds
    P = np.zeros((R, n), dtype=bool)
    P[: min(R, pattern.shape[0])] = pattern[:R]
    work = SyntheticWorkload(dim=2, seed=1)
    be = VirtualBackend(pattern_to_trace(P), VirtualConfig(c0=0.0, c1=0.0, **kw), workload=work)
    errs = []

    def on_job(j, g, r):
        assert r <= j + sc.T, f"job {j} decoded in round {r} > {j} + T"
        errs.append(
            float(np.abs(g - work.true_grad(j, sc)).max() / np.abs(work.true_grad(j, sc)).max())
        )

    res = Master(cfg).run(sc, be, on_job=on_job)
    assert sorted(res.job_done) == list(range(jobs))
    return sc, res, errs
