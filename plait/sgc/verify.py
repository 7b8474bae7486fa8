"""Decode every job of a run with random gradient vectors and keep the worst relative error.

The pieces of a scheme's tasks (``scheme.pieces``) never overlap partially: the distinct sample
ranges over every (group, chunk) of ``scheme.group_sizes()`` partition a job's data. Each range
gets a seeded standard-normal vector (its "gradient"); a worker's result is the float64 dot of
its piece coefficients with those vectors, as a worker would compute it; the master combines the
results with the scheme's own ``decode_coeffs(job)``; the truth is the sum over all ranges.
``DecodeCheck`` is called as each job decodes (``Master.run(on_job=...)``), so it uses exactly
the rows and coefficients the master decoded with. numpy and scipy.sparse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from plait.sgc.schemes.base import MiniTask, Scheme

if TYPE_CHECKING:
    from scipy import sparse


class DecodeCheck:
    """Relative decode error per job: |decoded - truth|_2 / |truth|_2 (float64 vectors)."""

    def __init__(self, dim: int = 8, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError(f"decode check needs dim >= 1, got {dim}")
        self.dim, self.seed = dim, seed
        self.errors: dict[int, float] = {}
        self.failed: list[int] = []  # jobs whose decoding raised
        self._rows: dict[tuple[int, int], int] = {}  # (group, chunk) -> row of _W
        self.ranges: dict[tuple[int, int], int] = {}  # (start, stop) -> row of vectors(job)
        self._W: sparse.csr_matrix | None = None  # (tasks, ranges) piece coefficients

    def _build(self, scheme: Scheme) -> sparse.csr_matrix:
        from scipy import sparse  # imported on first use: a simulation without checks skips it

        ranges = self.ranges
        entries = []
        for g, size in enumerate(scheme.group_sizes()):
            for c in range(size):
                self._rows[(g, c)] = len(self._rows)
                for a, b, w in scheme.pieces(MiniTask(0, g, c)):
                    entries.append((self._rows[(g, c)], ranges.setdefault((a, b), len(ranges)), w))
        spans = sorted(ranges)
        covered = sum(b - a for a, b in spans)
        if covered != scheme.job_size or any(p[1] > q[0] for p, q in zip(spans, spans[1:])):
            raise RuntimeError(f"{scheme.name}: task pieces do not partition a job's samples")
        ijw = np.array(entries, dtype=np.float64)  # (pieces, 3): task row, range column, coeff
        rows, cols = ijw[:, 0].astype(np.int64), ijw[:, 1].astype(np.int64)
        return sparse.csr_matrix((ijw[:, 2], (rows, cols)), shape=(len(self._rows), len(ranges)))

    def __call__(self, scheme: Scheme, job: int) -> float:
        """Decode ``job`` with fresh random vectors; record and return its relative error."""
        if self._W is None:
            self._W = self._build(scheme)
        try:
            coeffs = scheme.decode_coeffs(job)
        except ValueError:  # the ledger says decodable but the code cannot decode: a failure
            self.failed.append(job)
            self.errors[job] = float("inf")
            return float("inf")
        rows = np.array([self._rows[(t.group, t.chunk)] for t, _ in coeffs])
        c = np.array([c for _, c in coeffs])
        V = self.vectors(job)
        results = self._W[rows] @ V  # (tasks, dim): what the workers send
        decoded = c @ results  # (dim,): what the master computes
        truth = V.sum(axis=0)
        err = float(np.linalg.norm(decoded - truth) / np.linalg.norm(truth))
        self.errors[job] = err
        return err

    def vectors(self, job: int) -> np.ndarray:
        """(ranges, dim) the seeded random gradient of each sample range of ``job``."""
        return np.random.default_rng([self.seed, job]).standard_normal((len(self.ranges), self.dim))

    @property
    def worst(self) -> float:
        return max(self.errors.values(), default=0.0)

    def summary(self) -> dict:
        return dict(
            jobs=len(self.errors), failed=len(self.failed), worst_rel_error=self.worst, dim=self.dim
        )
