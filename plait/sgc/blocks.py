"""Block codes: the small (m, s) gradient codes a hybrid code is built from (numpy only).

A block has m workers and m unit partitions and tolerates s = m - k stragglers. Its coded rows lie
in a k-dimensional space C of functions on the m units that contains the all-ones vector: row j is
the element of C that vanishes on the k - 1 units j+s+1 .. j+s+k-1 (mod m), so worker j combines
units j .. j+s. The rows of any survivor set S decode the block's sum when their coefficient
vectors (k-dim, ``C[S]``) reach e_0 (the constant function): ``a = lstsq(C[S].T, e_0)``, the
minimum-norm solution, so adding survivors never increases ``|a|_2``.

Designs (docs/sgc.md has the measurements behind the choice):
- ``repeat`` (k = 1): the block is one fractional-repetition group; decoding picks one survivor
  with coefficient 1 (exact).
- ``linear`` (k = 2): C = span(1, t), t equispaced on [-1, 1]; amplification <= 2(m - 1).
- ``trig`` (odd k): real trigonometric polynomials of degree (k-1)/2 on the m-th roots of unity,
  the real cyclic MDS (DFT) code of Raviv, Tamo, Tandon and Dimakis, restricted to the block.
- ``random``: span(1, random orthonormal directions orthogonal to 1): Tandon et al.'s cyclic
  repetition code. ``block_code(m, k)`` picks the design with the smallest worst amplification
  bound on a fixed probe (every contiguous survivor run and 200 random survivor sets of size k).

Numerical promise: with rows scaled to max |B_ij| = 1 and ``beta`` the largest column 2-norm of B,
the amplification ``max_p sum_i |a_i| |B_ip|`` is at most ``bound = beta * |a|_2``. A survivor set
decodes ("ok") iff the residual ``|a^T B_S - 1|_inf <= 1e-10`` and ``bound <= AMPLIFICATION_LIMIT``.
Where every k-subset was checked at construction (``proven``), counting survivors is exact.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from math import comb

import numpy as np

AMPLIFICATION_LIMIT = 1e6  # decode error <= ~1.2e-16 * bound relative (docs/sgc.md): <= ~1.2e-10
RESIDUAL_LIMIT = 1e-10
ENUMERATE_LIMIT = (
    60_000  # prove a block by checking every k-subset when there are at most this many
)
DESIGNS = ("repeat", "linear", "trig", "random")


@dataclass(slots=True)
class Solution:
    """Decoding coefficients of one survivor set of a block (local indices)."""

    a: np.ndarray  # (m,) zero off the survivors
    bound: float  # beta * |a|_2, an upper bound on the amplification
    residual: float  # max |a^T B - 1|
    status: str  # "ok" | "rows" (fewer than k survivors) | "numeric" (ill-conditioned)


@dataclass(slots=True, kw_only=True)
class BlockCode:
    """One (m, s = m - k) block: coefficient vectors C (m, k), coded rows B (m, m)."""

    m: int
    k: int
    design: str
    seed: int = 0
    C: np.ndarray = field(init=False, repr=False)  # (m, k) row j = C[j] @ Phi
    B: np.ndarray = field(init=False, repr=False)  # (m, m) rows scaled to max |.| = 1
    beta: float = field(init=False)  # largest column 2-norm of B
    proven: bool = field(init=False, default=False)  # every k-subset decodes ("ok")
    worst: float = field(init=False, default=1.0)  # largest bound seen at construction
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.m:
            raise ValueError(f"block needs 1 <= k <= m, got m={self.m}, k={self.k}")
        if self.design not in DESIGNS:
            raise ValueError(f"unknown block design {self.design!r}; valid: {DESIGNS}")
        phi = _basis(self.m, self.k, self.design, self.seed)  # (k, m), orthogonal rows
        B = _rows(phi, self.m - self.k)  # (m, m)
        scale = np.abs(B).max(axis=1, keepdims=True)  # (m, 1)
        self.B = B / scale
        self.C = (self.B @ phi.T) / (phi**2).sum(axis=1)  # (m, k): coordinates of each row
        self.beta = float(np.sqrt((self.B**2).sum(axis=0)).max())

    def solve(self, mask: np.ndarray) -> Solution:
        """Decoding coefficients for the survivors ``mask`` (m,) bool; cached per set."""
        key = np.packbits(mask).tobytes()
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) >= 100_000:  # a long run with ever-new sets: start afresh
                self._cache.clear()
            hit = self._cache[key] = self._solve(np.asarray(mask, dtype=bool))
        return hit

    def _solve(self, mask: np.ndarray) -> Solution:
        rows = np.flatnonzero(mask)
        a = np.zeros(self.m)
        if len(rows) < self.k:
            return Solution(a, np.inf, np.inf, "rows")
        if self.k == 1:  # a repetition group: any one survivor, coefficient 1 (exact)
            a[rows[0]] = 1.0
            return Solution(a, 1.0, 0.0, "ok")
        e0 = np.zeros(self.k)
        e0[0] = 1.0
        a[rows] = np.linalg.lstsq(self.C[rows].T, e0, rcond=None)[0]
        resid = float(np.abs(a[rows] @ self.B[rows] - 1.0).max())
        bound = self.beta * float(np.linalg.norm(a))
        ok = resid <= RESIDUAL_LIMIT and bound <= AMPLIFICATION_LIMIT
        return Solution(a, bound, resid, "ok" if ok else "numeric")

    def status(self, mask: np.ndarray) -> str:
        """ "ok", "rows" or "numeric" for the survivors ``mask`` (m,) bool."""
        if self.proven or self.k == 1:
            return "ok" if int(mask.sum()) >= self.k else "rows"
        return self.solve(mask).status

    def subset_bounds(self, subsets: np.ndarray) -> np.ndarray:
        """Bounds (and inf where the residual fails) for k-subsets ``subsets`` (N, k), batched."""
        out = np.empty(len(subsets))
        e0 = np.zeros(self.k)
        e0[0] = 1.0
        step = max(1, 4_000_000 // (self.k * self.m))  # about 32 MB of B[S] at a time
        for lo in range(0, len(subsets), step):
            S = subsets[lo : lo + step]
            M = np.transpose(self.C[S], (0, 2, 1))  # (N, k, k): C[S]^T
            try:
                a = np.linalg.solve(M, np.broadcast_to(e0, (len(S), self.k))[..., None])[..., 0]
            except np.linalg.LinAlgError:  # an exactly singular subset: the slow, careful path
                a = np.linalg.pinv(M) @ e0  # (N, k)
            resid = np.abs(np.einsum("nk,nkm->nm", a, self.B[S]) - 1.0).max(axis=1)
            bound = self.beta * np.linalg.norm(a, axis=1)
            out[lo : lo + step] = np.where(resid <= RESIDUAL_LIMIT, bound, np.inf)
        return out

    def prove(self) -> None:
        """Check every k-subset when there are few enough; then counting survivors is exact."""
        if self.k == 1:
            self.proven = True
            return
        if comb(self.m, self.k) > ENUMERATE_LIMIT:
            return
        subsets = np.array(list(itertools.combinations(range(self.m), self.k)))
        worst = float(self.subset_bounds(subsets).max())
        self.worst = max(self.worst, worst)
        self.proven = worst <= AMPLIFICATION_LIMIT


def probe_sets(m: int, k: int, n_random: int = 200) -> np.ndarray:
    """Every contiguous run of k survivors (cyclic) and ``n_random`` seeded random k-subsets."""
    runs = (np.arange(m)[:, None] + np.arange(k)[None, :]) % m  # (m, k)
    rng = np.random.default_rng([m, k])
    rand = np.array([np.sort(rng.choice(m, k, replace=False)) for _ in range(n_random)])
    return np.vstack([runs, rand.reshape(-1, k)])


def candidates(k: int) -> list[tuple[str, int]]:
    """Designs worth measuring for a block of dimension k."""
    if k == 1:
        return [("repeat", 0)]
    if k == 2:
        return [("linear", 0)]
    rand = [("random", seed) for seed in range(3)]
    return [("trig", 0)] + rand if k % 2 else rand


@functools.lru_cache(maxsize=64)
def block_code(m: int, k: int, design: str | None = None, seed: int = 0) -> BlockCode:
    """The block code for (m, k): ``design`` if given, else the measured best (cached)."""
    if design is not None:
        code = BlockCode(m=m, k=k, design=design, seed=seed)
    else:
        probe = probe_sets(m, k) if k > 1 else np.zeros((0, 1), dtype=int)
        best: tuple[tuple[int, float], BlockCode] | None = None
        for name, sd in candidates(k):
            cand = BlockCode(m=m, k=k, design=name, seed=sd)
            w = cand.subset_bounds(probe) if len(probe) else np.ones(1)
            cand.worst = float(w.max())
            score = (
                int((w > AMPLIFICATION_LIMIT).sum()),
                float(w[np.isfinite(w)].max(initial=1.0)),
            )
            if best is None or score < best[0]:  # fewest probe failures, then smallest worst
                best = (score, cand)
        assert best is not None
        code = best[1]
    code.prove()
    return code


def _rows(phi: np.ndarray, s: int) -> np.ndarray:
    """B (m, m): row j is the element of span(phi) supported on units j .. j+s (mod m).

    Cheaper of two equivalent routes, in chunks of about 32 MB: k - 1 <= s: the unit vector
    orthogonal to phi at the k - 1 units row j misses; else the null vector of the complement
    basis H (s, m) restricted to the s + 1 units of the support (Tandon et al.'s construction).
    """
    k, m = phi.shape
    if k == 1 or s == 0:
        return np.ones((m, m)) if k == 1 else np.eye(m)
    B = np.zeros((m, m))
    if k - 1 <= s:
        miss = (np.arange(m)[:, None] + s + 1 + np.arange(k - 1)[None, :]) % m  # (m, k - 1)
        step = max(1, 4_000_000 // (k * k))
        for lo in range(0, m, step):
            stack = np.transpose(phi[:, miss[lo : lo + step]], (1, 0, 2))  # (c, k, k - 1)
            c = np.linalg.qr(stack, mode="complete")[0][:, :, -1]  # (c, k) c ⟂ phi(miss)
            B[lo : lo + step] = c @ phi
        B[np.arange(m)[:, None], miss] = 0.0  # exact zeros off the support (exact load)
        return B
    H = np.linalg.qr(phi.T, mode="complete")[0][:, k:].T  # (s, m): span(phi)'s complement
    supp = (np.arange(m)[:, None] + np.arange(s + 1)[None, :]) % m  # (m, s + 1)
    step = max(1, 4_000_000 // (s * s))
    for lo in range(0, m, step):
        stack = np.transpose(H[:, supp[lo : lo + step]], (1, 2, 0))  # (c, s + 1, s)
        x = np.linalg.qr(stack, mode="complete")[0][:, :, -1]  # (c, s + 1): H[:, supp] x = 0
        B[np.arange(lo, lo + len(x))[:, None], supp[lo : lo + step]] = x
    return B


def _basis(m: int, k: int, design: str, seed: int) -> np.ndarray:
    """Phi (k, m): the space C evaluated at the m units; Phi[0] is the all-ones row."""
    if design == "repeat":
        if k != 1:
            raise ValueError(f"design 'repeat' needs k = 1, got k={k}")
        return np.ones((1, m))
    if design == "linear":
        if k != 2:
            raise ValueError(f"design 'linear' needs k = 2, got k={k}")
        return np.vstack([np.ones(m), np.linspace(-1.0, 1.0, m)])
    if design == "trig":
        if k % 2 == 0:
            raise ValueError(f"design 'trig' needs an odd k (a real cyclic MDS code), got k={k}")
        th = 2 * np.pi * np.arange(m) / m
        rows = [np.ones(m)]
        for d in range(1, (k - 1) // 2 + 1):
            rows += [np.cos(d * th), np.sin(d * th)]
        return np.array(rows)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((m, k - 1))
    G -= G.mean(axis=0, keepdims=True)  # columns orthogonal to 1
    Q = np.linalg.qr(G)[0] if k > 1 else G  # (m, k - 1) orthonormal
    return np.vstack([np.ones(m), Q.T * np.sqrt(m)])
