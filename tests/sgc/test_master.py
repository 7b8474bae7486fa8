"""Master: the earliest cut is never later than the paper's; the binary-search cut equals the
online (one arrival at a time) cut; random traces always decode exactly; config errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.sgc.master import Master, MasterConfig, cut_from_times, plait_rules
from plait.sgc.schemes import make_scheme
from plait.sgc.traces import gilbert_elliott_trace, iid_trace
from plait.sgc.virtual import SyntheticWorkload, VirtualBackend, VirtualConfig

CASES = [
    ("gc", dict(s=2)),
    ("sr-sgc", dict(B=1, W=2, lam=3)),
    ("sr-sgc", dict(B=2, W=3, lam=3)),
    ("m-sgc", dict(B=1, W=2, lam=2)),
    ("m-sgc", dict(B=2, W=4, lam=3)),
    ("uncoded", {}),
    ("ignore", {}),
]


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(CASES),
    st.integers(0, 10**6),
    st.sampled_from(["model", "decodable"]),
    st.booleans(),
)
def test_earliest_cut_never_later_than_paper(case, seed, adm, ge) -> None:
    name, params = case
    n = 6
    sc = make_scheme(name, n, 15, **params)
    gen = gilbert_elliott_trace if ge else iid_trace
    tr = gen(n, sc.n_rounds, seed=seed)
    early = MasterConfig(cut="earliest", admissibility=adm)
    paper = MasterConfig(cut="paper", admissibility=adm)
    be = VirtualBackend(tr, VirtualConfig(c0=0.3))
    for r in range(sc.n_rounds):
        plan = sc.plan(r)
        if plan.empty:
            sc.commit(plan, np.ones(n, bool), np.zeros(n, bool))
            continue
        times = be.dispatch(plan, 0.0, sc).times
        ce = cut_from_times(sc, plan, times, early)
        cp = cut_from_times(sc, plan, times, paper)
        assert ce.close <= cp.close + 1e-12
        sc.commit(plan, ce.delivered, ~ce.delivered)


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(CASES),
    st.integers(0, 10**6),
    st.sampled_from(["paper", "earliest"]),
    st.sampled_from(["model", "decodable"]),
)
def test_fast_cut_equals_online_cut_and_decodes_exactly(case, seed, cut, adm) -> None:
    name, params = case
    n = 7
    cfg = MasterConfig(cut=cut, admissibility=adm, exemption=(cut == "paper"))
    out = []
    for online in (False, True):
        sc = make_scheme(name, n, 12, **params)
        work = SyntheticWorkload(seed=seed)
        be = VirtualBackend(
            iid_trace(n, sc.n_rounds, seed=seed, scale=0.5),
            VirtualConfig(c0=0.2, online=online),
            workload=work,
        )
        grads = {}
        res = Master(cfg).run(sc, be, on_job=lambda j, g, r, d=grads: d.__setitem__(j, g))
        for j, g in grads.items():
            truth = work.true_grad(j, sc)
            if sc.exact:
                assert np.abs(g - truth).max() <= 1e-9 * np.abs(truth).max()
        out.append(
            (sc.ledger, [lg.close for lg in res.rounds], [lg.stragglers for lg in res.rounds])
        )
    assert out[0] == out[1]


def test_ignore_reports_gradient_error() -> None:
    sc = make_scheme("ignore", 8, 10)
    be = VirtualBackend(
        iid_trace(8, 10, seed=1, scale=1.0), VirtualConfig(c0=0.1), workload=SyntheticWorkload()
    )
    res = Master(plait_rules()).run(sc, be)
    assert len(res.grad_error) == 10 and max(res.grad_error) > 0


def test_virtual_n256_500_rounds_is_fast() -> None:
    import time

    sc = make_scheme("m-sgc", 256, 496, B=1, W=2, lam=27)
    t0 = time.perf_counter()
    res = Master(plait_rules()).run(sc, VirtualBackend(gilbert_elliott_trace(256, 500, seed=0)))
    assert len(res.job_done) == 496
    assert time.perf_counter() - t0 < 30


@pytest.mark.parametrize("bad", [dict(mu=-1), dict(cut="x"), dict(admissibility="y")])
def test_bad_master_config(bad) -> None:
    with pytest.raises(ValueError):
        MasterConfig(**bad)


def test_trace_too_short_is_an_error() -> None:
    sc = make_scheme("gc", 4, 10, s=1)
    with pytest.raises(ValueError, match="needs"):
        Master().run(sc, VirtualBackend(iid_trace(4, 5, seed=0)))
    with pytest.raises(ValueError, match="needs"):
        Master().run(make_scheme("gc", 4, 3, s=1), VirtualBackend(iid_trace(5, 5, seed=0)))
