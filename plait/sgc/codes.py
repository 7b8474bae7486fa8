"""(n, s) gradient codes: fractional repetition (exact, binary) and cyclic repetition (float64).

A code has an encoding matrix ``B`` (n x n, float64): worker i sends ``f_i = sum_j B[i, j] g_j`` over
the partitions in its support. For any set I of at least n - s survivors there is ``a`` with
``a^T B[I, :] = 1^T``, so ``sum_i a_i f_i = sum_j g_j``. Decoding vectors are cached per survivor
set. numpy only (no torch): this module is scheme logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True, kw_only=True)
class GradientCode:
    """An (n, s) gradient code over n partitions; tolerates any <= s stragglers."""

    n: int  # workers = partitions
    s: int  # stragglers tolerated (<= s, not < s)
    kind: str = "auto"  # "auto" | "frc" | "crc"; auto picks frc when (s + 1) divides n
    seed: int = 0  # seed of the random orthonormal parity matrix of crc
    B: np.ndarray = field(init=False, repr=False)  # (n, n) encoding matrix, float64
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"gradient code needs n >= 1 workers, got n={self.n}; pass n >= 1")
        if not 0 <= self.s < self.n:
            raise ValueError(
                f"gradient code needs 0 <= s < n, got s={self.s}, n={self.n}; choose s in [0, {self.n - 1}]"
            )
        if self.kind == "auto":
            self.kind = "frc" if self.n % (self.s + 1) == 0 else "crc"
        if self.kind == "frc":
            if self.n % (self.s + 1):
                raise ValueError(
                    f"fractional repetition needs (s+1) | n, got n={self.n}, s={self.s}; use kind='crc'"
                )
            g = np.arange(self.n) // (self.s + 1)
            self.B = (g[:, None] == g[None, :]).astype(np.float64)
        elif self.kind == "crc":
            self.B = _cyclic_matrix(self.n, self.s, self.seed)
        else:
            raise ValueError(f"unknown code kind {self.kind!r}; valid: 'auto', 'frc', 'crc'")

    @property
    def load(self) -> float:
        """Fraction of one job's data a worker processes: (s + 1) / n."""
        return (self.s + 1) / self.n

    def support(self, i: int) -> list[int]:
        """Partitions worker i combines (s + 1 of them)."""
        return [int(j) for j in np.flatnonzero(self.B[i])]

    def groups(self) -> np.ndarray:
        """FRC group id per worker, shape (n,). Only for frc."""
        return np.arange(self.n) // (self.s + 1)

    def decodable(self, survivors: np.ndarray) -> bool:
        """Exact decodability of the sum from the rows in ``survivors`` (bool mask, shape (n,)).

        FRC: every group keeps a survivor (may exceed s erasures). CRC: at least n - s survivors
        (the construction guarantees any n - s rows span the all-ones vector).
        """
        if self.kind == "frc":
            k = self.s + 1
            return bool(survivors.reshape(self.n // k, k).any(axis=1).all())
        return int(survivors.sum()) >= self.n - self.s

    def decode_vector(self, survivors: np.ndarray) -> np.ndarray:
        """Coefficients a (shape (n,), zero off survivors) with a^T B = 1^T; cached per set."""
        key = np.packbits(survivors.astype(bool)).tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if not self.decodable(survivors):
            raise ValueError(
                f"survivor set of size {int(survivors.sum())} cannot decode an (n={self.n}, s={self.s}) "
                f"{self.kind} code; wait for more workers"
            )
        a = np.zeros(self.n)
        if self.kind == "frc":
            k = self.s + 1
            for grp in range(self.n // k):
                members = np.flatnonzero(survivors[grp * k : (grp + 1) * k])
                a[grp * k + members[0]] = 1.0
        else:
            rows = np.flatnonzero(survivors)
            sol, *_ = np.linalg.lstsq(self.B[rows].T, np.ones(self.n), rcond=None)
            resid = np.abs(self.B[rows].T @ sol - 1.0).max()
            if resid > 1e-8:
                raise RuntimeError(
                    f"cyclic code decode residual {resid:.2e}: rows are rank deficient"
                )
            a[rows] = sol
        self._cache[key] = a
        return a

    def condition(self, survivors: np.ndarray) -> float:
        """2-norm condition number of the survivors' encoding rows (1.0 for FRC's 0/1 pick)."""
        rows = np.flatnonzero(survivors)
        sv = np.linalg.svd(self.B[rows], compute_uv=False)
        sv = sv[sv > 1e-12 * sv[0]]
        return float(sv[0] / sv[-1])

    def conditioning(self, max_sets: int = 20) -> dict:
        """Condition numbers and largest |coefficient| over (up to ``max_sets``) cached decodes."""
        keys = list(self._cache)[:max_sets]
        conds = [
            self.condition(np.unpackbits(np.frombuffer(k, np.uint8))[: self.n].astype(bool))
            for k in keys
        ]
        coef = [float(np.abs(self._cache[k]).max()) for k in keys]
        return dict(
            kind=self.kind,
            sets=len(self._cache),
            max_condition=max(conds, default=1.0),
            max_abs_coefficient=max(coef, default=1.0),
        )

    def decode(self, results: dict[int, np.ndarray]) -> np.ndarray:
        """Sum of partial gradients from worker -> coded vector (float64)."""
        mask = np.zeros(self.n, dtype=bool)
        mask[list(results)] = True
        a = self.decode_vector(mask)
        return sum(
            a[i] * np.asarray(v, dtype=np.float64) for i, v in results.items() if a[i] != 0.0
        )


def _cyclic_matrix(n: int, s: int, seed: int) -> np.ndarray:
    """Cyclic-repetition B: worker i holds partitions i..i+s (mod n), rows in null(H), H 1 = 0.

    H (s x n) has orthonormal rows orthogonal to the all-ones vector (QR of a Gaussian), which
    keeps the entries and decoding vectors moderate; rows of B are solved with B[i, i] = 1.
    """
    B = np.zeros((n, n))
    if s == 0:
        return np.eye(n)
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((n, s))
    G -= G.mean(axis=0, keepdims=True)  # columns orthogonal to 1
    Q, _ = np.linalg.qr(G)  # (n, s) orthonormal columns, still orthogonal to 1
    H = Q.T  # (s, n)
    for i in range(n):
        sup = [(i + k) % n for k in range(1, s + 1)]
        x = np.linalg.solve(H[:, sup], -H[:, i])
        B[i, i] = 1.0
        B[i, sup] = x
    return B
