"""GC exactness: exhaustive over every straggler set of size <= s for n <= 10."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plait.sgc.codes import GradientCode


def _check_all(code: GradientCode, exact: bool) -> float:
    n, s = code.n, code.s
    rng = np.random.default_rng(n * 100 + s)
    parts = rng.integers(-50, 50, size=(n, 4)).astype(np.float64)  # partial gradients (n, D)
    coded = code.B @ parts  # (n, D) what each worker sends
    truth = parts.sum(axis=0)
    worst = 1.0
    for k in range(s + 1):
        for strag in itertools.combinations(range(n), k):
            alive = np.ones(n, dtype=bool)
            alive[list(strag)] = False
            assert code.decodable(alive)
            got = code.decode({i: coded[i] for i in np.flatnonzero(alive)})
            if exact:
                assert np.array_equal(got, truth)
            else:
                assert np.abs(got - truth).max() <= 1e-9 * np.abs(truth).max()
                worst = max(worst, code.condition(alive))
    return worst


@pytest.mark.parametrize("n", range(1, 11))
def test_gc_exact_exhaustive(n: int) -> None:
    for s in range(n):
        if n % (s + 1) == 0:
            _check_all(GradientCode(n=n, s=s, kind="frc"), exact=True)
        cond = _check_all(GradientCode(n=n, s=s, kind="crc", seed=s), exact=False)
        assert np.isfinite(cond)


def test_load_and_support() -> None:
    for n, s in [(8, 3), (7, 2), (10, 4)]:
        code = GradientCode(n=n, s=s)
        assert all(len(code.support(i)) == s + 1 for i in range(n))
        assert code.load == (s + 1) / n
        assert code.kind == ("frc" if n % (s + 1) == 0 else "hybrid")


def test_frc_decodes_beyond_s_when_groups_survive() -> None:
    code = GradientCode(n=8, s=3)  # groups {0..3}, {4..7}
    alive = np.zeros(8, dtype=bool)
    alive[[2, 5]] = True  # 6 stragglers > s, but each group keeps one
    assert code.decodable(alive)
    alive[5] = False
    assert not code.decodable(alive)
    with pytest.raises(ValueError, match="wait for more"):
        code.decode_vector(alive)


def test_decode_vectors_are_cached() -> None:
    code = GradientCode(n=7, s=2)
    alive = np.array([0, 1, 1, 1, 1, 1, 0], dtype=bool)
    assert code.decode_vector(alive) is code.decode_vector(alive.copy())


@pytest.mark.parametrize(
    "bad",
    [
        dict(n=0, s=0),
        dict(n=4, s=4),
        dict(n=4, s=-1),
        dict(n=6, s=3, kind="frc"),
        dict(n=4, s=1, kind="mds"),
    ],
)
def test_bad_code_params(bad: dict) -> None:
    with pytest.raises(ValueError):
        GradientCode(**bad)
