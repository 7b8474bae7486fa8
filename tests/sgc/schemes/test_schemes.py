"""SR-SGC / M-SGC / GC: exact decoding by t + T under every admissible pattern, load formula,
no wait-out on admissible patterns, fallback on violations, determinism, bad input."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.sgc.master import MasterConfig, paper_rules, plait_rules
from plait.sgc.schemes import make_scheme, sr_sgc_s
from plait.sgc.stragglers import BurstyModel
from plait.sgc.traces import adversarial_pattern, violating_pattern
from tests.sgc.helpers import admissible_patterns, run_pattern

MODES = {
    "paper": paper_rules(),
    "model-earliest": MasterConfig(cut="earliest", admissibility="model"),
    "plait": plait_rules(),
}
TINY = [  # (scheme, n, jobs, params): exhaustive over every admissible pattern
    ("sr-sgc", 3, 3, dict(B=1, W=2, lam=2)),
    ("sr-sgc", 3, 3, dict(B=1, W=3, lam=2)),
    ("sr-sgc", 2, 3, dict(B=2, W=3, lam=2)),
    ("m-sgc", 3, 3, dict(B=1, W=2, lam=1)),
    ("m-sgc", 3, 2, dict(B=1, W=3, lam=2)),
    ("m-sgc", 2, 2, dict(B=2, W=3, lam=1)),
    ("gc", 3, 3, dict(s=1)),
]


@pytest.mark.parametrize("case", TINY, ids=lambda c: f"{c[0]}-{c[1]}-{c[3]}")
def test_exhaustive_admissible_patterns_decode_exactly(case) -> None:
    name, n, jobs, params = case
    sc = make_scheme(name, n, jobs, **params)
    count = 0
    for P in admissible_patterns(sc.model, n, sc.n_rounds):
        for cfg in MODES.values():
            _, res, errs = run_pattern(name, n, jobs, params, P, cfg)
            assert res.wait_outs == 0 and res.extended == 0, P.astype(int)
            assert max(errs) <= 1e-9
        count += 1
    assert count > 10


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["sr-sgc", "m-sgc"]),
    st.integers(4, 8),
    st.integers(1, 2),
    st.integers(1, 2),
    st.integers(1, 4),
    st.integers(0, 10**6),
    st.sampled_from(sorted(MODES)),
)
def test_property_admissible_patterns(name, n, B, k, lam, seed, mode) -> None:
    W = k * B + 1 if name == "sr-sgc" else B + k
    lam = min(lam, n - 1)
    params = dict(B=B, W=W, lam=lam)
    P = adversarial_pattern(n, 12 + W + B, BurstyModel(B=B, W=W, lam=lam), seed=seed)
    _, res, errs = run_pattern(name, n, 10, params, P, MODES[mode])
    assert res.wait_outs == 0 and res.extended == 0
    assert max(errs) <= 1e-9


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["sr-sgc", "m-sgc", "gc"]),
    st.integers(4, 7),
    st.integers(0, 10**6),
    st.sampled_from(sorted(MODES)),
)
def test_violating_patterns_fall_back_and_decode(name, n, seed, mode) -> None:
    params = dict(s=1) if name == "gc" else dict(B=1, W=3, lam=2)
    model = BurstyModel(B=1, W=3, lam=2 if name != "gc" else 1)
    P = violating_pattern(n, 14, model, seed=seed)
    _, res, errs = run_pattern(name, n, 10, params, P, MODES[mode])
    assert max(errs) <= 1e-9


@pytest.mark.parametrize(
    "name,params",
    [
        ("uncoded", {}),
        ("gc", dict(s=3)),
        ("gc", dict(s=2)),
        ("sr-sgc", dict(B=1, W=2, lam=3)),
        ("sr-sgc", dict(B=2, W=5, lam=5)),
        ("m-sgc", dict(B=1, W=2, lam=2)),
        ("m-sgc", dict(B=2, W=4, lam=3)),
        ("m-sgc", dict(B=1, W=3, lam=5)),
    ],
)
def test_measured_max_load_equals_formula(name, params) -> None:
    n = 6
    sc = make_scheme(name, n, 12, unit=2, **params)
    P = adversarial_pattern(n, sc.n_rounds, BurstyModel(B=1, W=2, lam=1), seed=0)
    sc, res, _ = run_pattern(name, n, 12, dict(unit=2, **params), P, plait_rules())
    assert Fraction(res.max_samples(), sc.job_size) == sc.load()
    if name == "m-sgc":
        B, W, lam = params["B"], params["W"], params["lam"]
        assert sc.load() == Fraction((lam + 1) * (W - 1 + B), n * (B + (W - 1) * (lam + 1)))
        assert (
            res.rounds[0].samples.max() < res.max_samples() or W - 1 + B == 1
        )  # warm-up is lighter
    if name == "sr-sgc":
        assert sc.load() == Fraction(sr_sgc_s(params["B"], params["W"], params["lam"]) + 1, n)


def test_reference_example_sizes() -> None:
    sc = make_scheme("m-sgc", 6, 4, B=1, W=2, lam=2)  # reference/sgc.md: Den = 4, N = 24, load 1/4
    assert sc.den == 4 and sc.job_size == 24 and sc.load() == Fraction(1, 4)
    assert sr_sgc_s(2, 3, 23) == 12 and sr_sgc_s(1, 2, 27) == 14


def test_determinism_identical_ledger() -> None:
    from plait.sgc.master import Master
    from plait.sgc.traces import gilbert_elliott_trace
    from plait.sgc.virtual import VirtualBackend, VirtualConfig

    tr = gilbert_elliott_trace(16, 40, seed=5)
    out = []
    for _ in range(2):
        sc = make_scheme("m-sgc", 16, 38, B=1, W=2, lam=3)
        res = Master(plait_rules()).run(sc, VirtualBackend(tr, VirtualConfig(c0=0.5)))
        out.append((sc.ledger, [lg.stragglers for lg in res.rounds], res.total_time))
    assert out[0] == out[1]


@pytest.mark.parametrize(
    "name,params,msg",
    [
        ("sr-sgc", dict(B=2, W=4, lam=3), "divide W - 1"),
        ("sr-sgc", dict(B=1, W=1, lam=3), "B < W"),
        ("sr-sgc", dict(B=1, W=2, lam=40), "lower lambda"),
        ("m-sgc", dict(B=3, W=3, lam=1), "B < W"),
        ("m-sgc", dict(B=1, W=2, lam=8), "lambda < n"),
        ("gc", dict(s=8), "s < n"),
        ("nope", {}, "valid"),
    ],
)
def test_bad_scheme_params(name, params, msg) -> None:
    with pytest.raises(ValueError, match=msg):
        make_scheme(name, 8, 10, **params)
    with pytest.raises(ValueError, match="n >= 1"):
        make_scheme("uncoded", 0, 10)


def test_deadline_miss_is_detected() -> None:
    sc = make_scheme("gc", 4, 2, s=1)
    plan = sc.plan(0)
    none = np.zeros(4, dtype=bool)
    with pytest.raises(RuntimeError, match="not decodable"):
        sc.commit(plan, none, ~none)
