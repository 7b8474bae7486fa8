"""Decodability decided by the numbers: the master waits on numerically undecodable sets (and the
round log says why), SR-SGC adds re-attempts, M-SGC checks D2 groups that get no later chance;
end-to-end runs at n = 256 decode every job with real vectors; the decode check and its twin."""

from __future__ import annotations

import numpy as np
import pytest

from plait.sgc.bench import Arm, run_arm
from plait.sgc.master import Master, MasterConfig, paper_rules, plait_rules
from plait.sgc.schemes import make_scheme
from plait.sgc.traces import gilbert_elliott_trace
from plait.sgc.verify import DecodeCheck
from plait.sgc.virtual import SyntheticWorkload, VirtualBackend, VirtualConfig

from .helpers import run_pattern


def _contiguous(rounds: int, n: int, where: dict[int, range]) -> np.ndarray:
    P = np.zeros((rounds, n), dtype=bool)
    for r, workers in where.items():
        P[r, list(workers)] = True
    return P


@pytest.mark.parametrize("cfg", [plait_rules(), paper_rules()], ids=["plait", "paper"])
def test_gc_waits_on_a_numerically_undecodable_set(cfg) -> None:
    """13 contiguous stragglers of n = 64: the one-block real cyclic MDS code counts them as
    decodable (13 <= s) but cannot decode them; the master waits, the log says "numeric"."""
    P = _contiguous(6, 64, {r: range(13) for r in range(6)})
    sc, res, errs = run_pattern("gc", 64, 6, dict(s=13, code="dft"), P, cfg)
    assert max(errs) <= 1e-9
    assert all(lg.wait_reason == "numeric" for lg in res.rounds)
    assert all(len(lg.stragglers) < 13 for lg in res.rounds)
    hyb = run_pattern("gc", 64, 6, dict(s=13), P, cfg)[1]  # the hybrid code decodes the same set
    assert all(lg.wait_reason is None and len(lg.stragglers) == 13 for lg in hyb.rounds)


def test_sr_sgc_adds_reattempts_until_the_set_decodes() -> None:
    """20 stragglers in round 0 (s = 13): the count asks 7 re-attempts, which leave 13
    contiguous rows missing, numerically undecodable for the dft code: more rows are redone."""
    P = _contiguous(8, 64, {0: range(20)})
    params = dict(B=1, W=2, lam=26)
    sc, res, errs = run_pattern("sr-sgc", 64, 6, dict(params, code="dft"), P, plait_rules())
    assert max(errs) <= 1e-9 and res.rounds[1].reattempts > 7
    sc2, res2, errs2 = run_pattern("sr-sgc", 64, 6, params, P, plait_rules())  # hybrid: 7 suffice
    assert max(errs2) <= 1e-9 and res2.rounds[1].reattempts == 7


@pytest.mark.parametrize("cfg", [plait_rules(), paper_rules()], ids=["plait", "paper"])
def test_m_sgc_checks_final_d2_groups(cfg) -> None:
    """Job 0's first D2 group is computed in round 2 only; 13 contiguous stragglers there would
    leave it numerically undecodable at its deadline (round 3). The master waits in round 2."""
    P = _contiguous(9, 64, {2: range(13)})
    sc, res, errs = run_pattern("m-sgc", 64, 5, dict(B=2, W=3, lam=13, code="dft"), P, cfg)
    assert max(errs) <= 1e-9
    assert res.rounds[2].wait_reason == "numeric"


def test_wait_reasons_rows_and_model() -> None:
    P = _contiguous(6, 8, {1: range(3), 3: range(0, 4, 2)})  # FRC groups {0,1} {2,3} ...
    _, res, _ = run_pattern("gc", 8, 6, dict(s=1), P, plait_rules())
    assert res.rounds[1].wait_reason == "rows" and res.rounds[0].wait_reason is None
    assert res.rounds[3].wait_reason is None  # 2 > s stragglers, but every group survives
    model = MasterConfig(cut="earliest", admissibility="model")
    _, res, _ = run_pattern("gc", 8, 6, dict(s=1), P, model)
    assert res.rounds[3].wait_reason == "model"  # decodable, but outside the s-per-round model
    _, res, _ = run_pattern("gc", 8, 6, dict(s=1), P, paper_rules())
    assert res.rounds[3].wait_reason == "rows"  # the paper's rules count rows: 2 > s


def _end_to_end(name: str, params: dict, jobs: int) -> None:
    n = 256
    sc = make_scheme(name, n, jobs, **params)
    work = SyntheticWorkload(dim=3, seed=2)
    be = VirtualBackend(
        gilbert_elliott_trace(n, sc.n_rounds, seed=3), VirtualConfig(), workload=work
    )
    errs = {}

    def on_job(j, g, r):
        truth = work.true_grad(j, sc)
        errs[j] = float(np.linalg.norm(g - truth) / np.linalg.norm(truth))

    res = Master(plait_rules()).run(sc, be, on_job=on_job)
    assert sorted(errs) == list(range(jobs)) == sorted(res.job_done)
    assert max(errs.values()) <= 1e-9


@pytest.mark.parametrize(
    "name,params", [("sr-sgc", dict(B=2, W=3, lam=23)), ("m-sgc", dict(B=1, W=2, lam=27))]
)
def test_end_to_end_n256_bursty(name: str, params: dict) -> None:
    _end_to_end(name, params, jobs=40)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,params",
    [
        ("sr-sgc", dict(B=2, W=3, lam=23)),
        ("sr-sgc", dict(B=1, W=2, lam=64)),
        ("m-sgc", dict(B=1, W=2, lam=27)),
        ("m-sgc", dict(B=2, W=3, lam=64)),
    ],
)
def test_end_to_end_n256_500_rounds(name: str, params: dict) -> None:
    _end_to_end(name, params, jobs=500 - make_scheme(name, 256, 1, **params).T)


def test_decode_check_twin_and_it_catches_a_wrong_decode() -> None:
    tr = gilbert_elliott_trace(32, 30, seed=1)
    sc = make_scheme("m-sgc", 32, 24, B=2, W=3, lam=5)
    check = DecodeCheck(dim=4, seed=3)
    Master(plait_rules()).run(sc, VirtualBackend(tr), on_job=lambda j, g, r: check(sc, j))
    assert len(check.errors) == 24 and check.worst <= 1e-12 and not check.failed
    for job in (0, 11, 23):  # the slow twin: loop over every task's pieces
        V = check.vectors(job)
        slow = sum(
            c * sum(w * V[check.ranges[(a, b)]] for a, b, w in sc.pieces(t))
            for t, c in sc.decode_coeffs(job)
        )
        err = np.linalg.norm(slow - V.sum(axis=0)) / np.linalg.norm(V.sum(axis=0))
        assert abs(err - check.errors[job]) <= 1e-12
    wrong = sc.decode_coeffs(5)[1:]  # drop one term: the check must see it
    sc.decode_coeffs = lambda job: wrong  # type: ignore[method-assign]
    assert check(sc, 5) > 1e-3


def test_run_arm_verify_reports_worst_error() -> None:
    tr = gilbert_elliott_trace(64, 40, seed=0)
    r = run_arm(
        Arm(scheme="sr-sgc", params=dict(B=1, W=2, lam=9), rules="plait"), tr, 38, verify=True
    )
    assert r["decode_check"]["jobs"] == 38 and r["decode_check"]["worst_rel_error"] <= 1e-9
    r = run_arm(Arm(scheme="ignore"), tr, 38, verify=True)
    assert r["decode_check"] is None  # approximate: nothing to verify
