"""The admissibility oracle: incremental == brute force; generators admissible; violations caught."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.sgc.stragglers import ArbitraryModel, BurstyModel, PerRoundModel, admissible_incremental
from plait.sgc.traces import (
    Trace,
    adversarial_pattern,
    gilbert_elliott_trace,
    iid_trace,
    straggler_stats,
    violating_pattern,
)


def _brute_bursty(P: np.ndarray, B: int, W: int, lam: int) -> bool:
    """Definition, spelled out on every window of W rounds (including truncated ones at the start)."""
    R, n = P.shape
    for start in range(-W + 1, R):
        rows = [r for r in range(start, start + W) if 0 <= r < R]
        who = {i for r in rows for i in range(n) if P[r, i]}
        if len(who) > lam:
            return False
        for i in who:
            rs = [r for r in rows if P[r, i]]
            if max(rs) - min(rs) + 1 > B:
                return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3), st.integers(0, 3), st.integers(0, 4), st.data())
def test_bursty_incremental_equals_definition(B: int, extra: int, lam: int, data) -> None:
    W = B + 1 + extra
    R, n = data.draw(st.integers(1, 7)), data.draw(st.integers(1, 4))
    bits = data.draw(st.lists(st.booleans(), min_size=R * n, max_size=R * n))
    P = np.array(bits, dtype=bool).reshape(R, n)
    m = BurstyModel(B=B, W=W, lam=lam)
    want = _brute_bursty(P, B, W, lam)
    assert m.admissible(P) == want
    assert admissible_incremental(m, P) == want


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 3), st.integers(1, 4), st.integers(0, 4), st.data())
def test_other_models_incremental(N: int, W: int, lam: int, data) -> None:
    R, n = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 4))
    P = np.array(data.draw(st.lists(st.booleans(), min_size=R * n, max_size=R * n)), bool).reshape(
        R, n
    )
    for m in (ArbitraryModel(N=N, W=W, lam=lam), PerRoundModel(s=lam)):
        assert m.admissible(P) == admissible_incremental(m, P)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3), st.integers(0, 3), st.integers(1, 6), st.integers(0, 10_000))
def test_generators(B: int, extra: int, lam: int, seed: int) -> None:
    m = BurstyModel(B=B, W=B + 1 + extra, lam=lam)
    P = adversarial_pattern(8, 20, m, seed=seed)
    assert m.admissible(P)
    assert not m.admissible(violating_pattern(8, 20, m, seed=seed))
    # any single extra straggling cell that the oracle rejects really breaks the definition
    r, i = seed % 20, seed % 8
    Q = P.copy()
    Q[r, i] = True
    assert m.admissible(Q) == _brute_bursty(Q, m.B, m.W, m.lam)


def test_trace_io_and_shapes(tmp_path) -> None:
    t = gilbert_elliott_trace(16, 30, seed=3)
    t.save(tmp_path / "t.npz")
    u = Trace.load(tmp_path / "t.npz")
    assert np.array_equal(t.delays, u.delays) and u.meta["source"] == "gilbert-elliott"
    assert np.array_equal(gilbert_elliott_trace(16, 30, seed=3).delays, t.delays)
    with pytest.raises(ValueError, match="shape"):
        Trace(delays=np.zeros(5))
    with pytest.raises(ValueError, match=">= 0"):
        Trace(delays=-np.ones((2, 2)))
    with pytest.raises(ValueError, match="needs"):
        iid_trace(4, 10, seed=0).check(5, 10)
    with pytest.raises(ValueError, match="not a trace"):
        np.savez(tmp_path / "x.npz", foo=np.zeros(2))
        Trace.load(tmp_path / "x.npz")


def test_calibration_close_to_lambda_profile() -> None:
    st_ = straggler_stats(gilbert_elliott_trace(256, 200, seed=0))
    assert 9 <= st_["mean"] <= 17  # reference: 12.8 stragglers per round
    assert st_["bursts"][1] > 8 * st_["bursts"].get(2, 0)  # mostly single-round bursts
    assert 0.55 <= st_["median_latency"] <= 0.75  # reference: 0.64 s


@pytest.mark.parametrize(
    "bad", [dict(B=0, W=2, lam=1), dict(B=2, W=2, lam=1), dict(B=1, W=2, lam=-1)]
)
def test_bad_model(bad: dict) -> None:
    with pytest.raises(ValueError):
        BurstyModel(**bad)
