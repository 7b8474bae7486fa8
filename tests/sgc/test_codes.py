"""Gradient codes: exhaustive exactness for n <= 10, the hybrid code's structure, and decoding to
1e-9 (float64) under random and adversarial (contiguous, every rotation) straggler sets up to
n = 1024; numerically undecodable sets are refused, never decoded wrongly."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from plait.sgc.blocks import AMPLIFICATION_LIMIT, BlockCode, _basis, block_code
from plait.sgc.codes import GradientCode, hybrid_layout

TOL = 1e-9


def _rel_err(code: GradientCode, alive: np.ndarray, g: np.ndarray) -> float:
    """Decode sum(g) from the coded rows of ``alive``; relative 2-norm error."""
    coded = code.B @ g  # (n, D): what the workers send
    got = code.decode({int(i): coded[i] for i in np.flatnonzero(alive)})
    truth = g.sum(axis=0)
    return float(np.linalg.norm(got - truth) / np.linalg.norm(truth))


def _check_all(code: GradientCode, exact: bool) -> None:
    n, s = code.n, code.s
    rng = np.random.default_rng(n * 100 + s)
    parts = rng.integers(-50, 50, size=(n, 4)).astype(np.float64)  # partial gradients (n, D)
    coded = code.B @ parts
    truth = parts.sum(axis=0)
    for k in range(s + 1):
        for strag in itertools.combinations(range(n), k):
            alive = np.ones(n, dtype=bool)
            alive[list(strag)] = False
            assert code.status(alive) == "ok"
            got = code.decode({i: coded[i] for i in np.flatnonzero(alive)})
            if exact:
                assert np.array_equal(got, truth)
            else:
                assert np.abs(got - truth).max() <= TOL * np.abs(truth).max()


@pytest.mark.parametrize("n", range(1, 11))
def test_gc_exact_exhaustive(n: int) -> None:
    for s in range(n):
        if n % (s + 1) == 0:
            _check_all(GradientCode(n=n, s=s, kind="frc"), exact=True)
        _check_all(GradientCode(n=n, s=s), exact=n % (s + 1) == 0)
        _check_all(GradientCode(n=n, s=s, kind="crc", seed=s), exact=False)
        if (n - s) % 2:
            _check_all(GradientCode(n=n, s=s, kind="dft"), exact=False)


@pytest.mark.parametrize("n,s", [(8, 3), (7, 2), (10, 4), (256, 12), (256, 64), (1024, 40)])
def test_load_and_support(n: int, s: int) -> None:
    code = GradientCode(n=n, s=s)
    assert all(len(code.support(i)) == s + 1 for i in range(n))
    assert ((code.B != 0).sum(axis=0) == s + 1).all()  # every partition held by s + 1 workers
    assert code.load == (s + 1) / n
    assert code.kind == ("frc" if n % (s + 1) == 0 else "hybrid")
    assert sum(b["m"] for b in code.layout()) == n
    assert all(b["m"] == s + b["k"] for b in code.layout())


@pytest.mark.parametrize("n", [16, 64, 256, 1000, 1024])
def test_hybrid_layout(n: int) -> None:
    for s in range(n // 2):
        ks = hybrid_layout(n, s)
        q, r = divmod(n, s + 1)
        assert len(ks) == q and sum(s + k for k in ks) == n and min(ks) >= 1
        if r <= 2 * q:  # small extras: linear (k = 2) and k = 3 blocks only
            assert max(ks) <= 3
        assert max(ks) - 1 <= max(4, -(-r // q) + 1)


@pytest.mark.parametrize("design,k", [("linear", 2), ("trig", 3), ("trig", 5), ("random", 4)])
def test_block_rows(design: str, k: int) -> None:
    for m in (k, k + 1, 13, 40):
        c = BlockCode(m=m, k=k, design=design)
        phi = _basis(m, k, design, 0)
        gram = phi @ phi.T
        assert np.allclose(gram, np.diag(np.diag(gram)))  # orthogonal rows: C is B's coordinates
        np.testing.assert_allclose(c.C @ phi, c.B, atol=1e-12)
        for j in range(m):
            want = sorted((j + t) % m for t in range(m - k + 1))
            assert list(np.flatnonzero(c.B[j])) == want


def test_counting_twin_of_numeric_status() -> None:
    """A proven block answers by counting; the numeric solve (the slow twin) must agree."""
    rng = np.random.default_rng(0)
    for m, k in [(14, 2), (16, 3), (17, 5), (29, 2)]:
        c = block_code(m, k)
        assert c.proven and c.worst <= AMPLIFICATION_LIMIT
        for _ in range(200):
            mask = rng.random(m) < rng.uniform(0.05, 0.6)
            assert c.status(mask) == c.solve(mask).status


def test_numeric_refusal_and_monotone() -> None:
    """The one-block real cyclic MDS code fails on contiguous runs at n = 64: refused with a
    reason, never decoded; more survivors never turn an accepted set into a refused one."""
    code = GradientCode(n=64, s=13, kind="dft")
    alive = np.ones(64, dtype=bool)
    alive[:13] = False
    assert code.status(alive) == "numeric" and not code.decodable(alive)
    with pytest.raises(ValueError, match="ill-conditioned"):
        code.decode_vector(alive)
    hybrid = GradientCode(n=256, s=64)  # blocks of 86 with k = 22, checked numerically
    rng = np.random.default_rng(1)
    for _ in range(30):
        alive = np.ones(256, dtype=bool)
        alive[rng.choice(256, 64, replace=False)] = False
        more = alive | (rng.random(256) < 0.3)
        if hybrid.status(alive) == "ok":
            assert hybrid.status(more) == "ok"


def _straggler_sets(n: int, s: int, n_random: int, seed: int):
    for start in range(n):  # adversarial for cyclic codes: a contiguous run, every rotation
        alive = np.ones(n, dtype=bool)
        alive[(start + np.arange(s)) % n] = False
        yield alive
    rng = np.random.default_rng([n, s, seed])
    for _ in range(n_random):
        alive = np.ones(n, dtype=bool)
        alive[rng.choice(n, rng.integers(0, s + 1), replace=False)] = False
        yield alive


def _sweep(n: int, s: int, n_random: int) -> None:
    code = GradientCode(n=n, s=s)
    rng = np.random.default_rng(s)
    g = rng.standard_normal((n, 8))  # partial gradients
    for alive in _straggler_sets(n, s, n_random, 0):
        assert code.status(alive) == "ok", (n, s, np.flatnonzero(~alive))
        assert _rel_err(code, alive, g) <= TOL


FAST = [(16, 2), (16, 4), (64, 5), (64, 12), (64, 16), (256, 12), (256, 23), (256, 27), (256, 32)]
SLOW = [(256, s) for s in (2, 5, 13, 40, 50, 64)] + [
    (1024, s) for s in (2, 12, 40, 64, 100, 128, 200, 256)
]


@pytest.mark.parametrize("n,s", FAST)
def test_decodes_random_and_contiguous_sets(n: int, s: int) -> None:
    _sweep(n, s, n_random=40)


@pytest.mark.slow
@pytest.mark.parametrize("n,s", SLOW)
def test_decodes_random_and_contiguous_sets_large(n: int, s: int) -> None:
    _sweep(n, s, n_random=100)


def test_frc_decodes_beyond_s_when_groups_survive() -> None:
    code = GradientCode(n=8, s=3)  # groups {0..3}, {4..7}
    alive = np.zeros(8, dtype=bool)
    alive[[2, 5]] = True  # 6 stragglers > s, but each group keeps one
    assert code.decodable(alive)
    alive[5] = False
    assert code.status(alive) == "rows"
    with pytest.raises(ValueError, match="wait for more"):
        code.decode_vector(alive)


def test_decode_vectors_are_cached() -> None:
    code = GradientCode(n=7, s=2)
    alive = np.array([0, 1, 1, 1, 1, 1, 0], dtype=bool)
    assert code.decode_vector(alive) is code.decode_vector(alive.copy())
    assert code.conditioning()["sets"] >= 1


@pytest.mark.parametrize(
    "bad",
    [
        dict(n=0, s=0),
        dict(n=4, s=4),
        dict(n=4, s=-1),
        dict(n=6, s=3, kind="frc"),
        dict(n=4, s=1, kind="mds"),
        dict(n=8, s=2, kind="dft"),
    ],
)
def test_bad_code_params(bad: dict) -> None:
    with pytest.raises(ValueError):
        GradientCode(**bad)


# --- issue 22: arguments checked where they enter ---


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        (dict(n=8.0, s=1), TypeError, "int n"),
        (dict(n=8, s=1.5), TypeError, "int s"),
        (dict(n=True, s=0), TypeError, "int n"),
        (dict(n="8", s=1), TypeError, "int n"),
    ],
)
def test_code_parameters_must_be_ints(kwargs, error, words) -> None:
    with pytest.raises(error, match=words):
        GradientCode(**kwargs)


@pytest.mark.parametrize(
    ("mask", "error", "words"),
    [
        (np.ones(7, dtype=bool), ValueError, r"shape \(8,\)"),  # short: a worker left out
        (np.ones(9, dtype=bool), ValueError, r"shape \(8,\)"),  # long
        (np.ones((2, 8), dtype=bool), ValueError, r"shape \(8,\)"),
        (np.full(8, 0.5), TypeError, "bool"),
        (np.full(8, 2), TypeError, "bool"),
    ],
)
def test_survivor_masks_must_fit_the_code(mask, error, words) -> None:
    code = GradientCode(n=8, s=1)
    for call in (code.status, code.decodable, code.decode_vector, code.condition):
        with pytest.raises(error, match=words):
            call(mask)
    assert code.decodable(np.ones(8, dtype=np.int64))  # 0/1 integers are a mask too


def test_decode_refuses_unknown_workers() -> None:
    code = GradientCode(n=4, s=1)
    with pytest.raises(ValueError, match="worker index 0..3"):
        code.decode({0: np.ones(2), 7: np.ones(2), 2: np.ones(2)})


def test_straggler_models_need_int_parameters() -> None:
    from plait.sgc.stragglers import ArbitraryModel, BurstyModel, PerRoundModel

    with pytest.raises(TypeError, match="int s"):
        PerRoundModel(s=1.5)
    with pytest.raises(TypeError, match="int W"):
        BurstyModel(B=1, W=2.0, lam=3)
    with pytest.raises(TypeError, match="int lam"):
        ArbitraryModel(N=1, W=2, lam="3")
