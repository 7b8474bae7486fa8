"""Straggler models and the admissibility oracle (numpy only).

A pattern is a bool array (R, n): True where worker i straggles in round r. Each model has a
brute-force ``admissible(pattern)`` straight from its definition and an incremental
``window_ok(prev, row)`` that checks only the windows ending at the newest row (earlier windows were
checked when their rows arrived; all constraints are monotone, so fewer stragglers never hurt).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _ints(model: object, *names: str) -> None:
    for name in names:
        v = getattr(model, name)
        if type(v) is not int and not isinstance(v, np.integer):
            raise TypeError(f"{type(model).__name__} needs an int {name}, got {v!r}")


@dataclass(slots=True, kw_only=True)
class PerRoundModel:
    """At most s stragglers in every round (what (n, s)-GC tolerates)."""

    s: int

    def __post_init__(self) -> None:
        _ints(self, "s")
        if self.s < 0:
            raise ValueError(f"per-round model needs s >= 0, got {self.s}")

    @property
    def lookback(self) -> int:
        return 0

    def window_ok(self, prev: np.ndarray, row: np.ndarray) -> bool:
        return int(row.sum()) <= self.s

    def admissible(self, pattern: np.ndarray) -> bool:
        return bool((np.asarray(pattern).sum(axis=1) <= self.s).all())


@dataclass(slots=True, kw_only=True)
class BurstyModel:
    """(B, W, lambda)-bursty: in every window of W consecutive rounds, at most lam distinct workers
    straggle, and each worker's straggling rounds fit in one burst of at most B consecutive rounds."""

    B: int
    W: int
    lam: int

    def __post_init__(self) -> None:
        _ints(self, "B", "W", "lam")
        if not 1 <= self.B < self.W:
            raise ValueError(f"bursty model needs 1 <= B < W, got B={self.B}, W={self.W}")
        if self.lam < 0:
            raise ValueError(f"bursty model needs lambda >= 0, got {self.lam}")

    @property
    def lookback(self) -> int:
        return self.W - 1

    def window_ok(self, prev: np.ndarray, row: np.ndarray) -> bool:
        """prev: (k, n) rows just before ``row`` (k <= W - 1, older first); row: (n,)."""
        prev = prev[-(self.W - 1) :] if self.W > 1 else prev[:0]
        if int((row | prev.any(axis=0)).sum()) > self.lam:
            return False
        k = prev.shape[0]
        old = prev[: max(0, k - (self.B - 1))]  # rounds r-W+1 .. r-B
        return not bool((old.any(axis=0) & row).any())

    def admissible(self, pattern: np.ndarray) -> bool:
        P = np.asarray(pattern, dtype=bool)
        R = P.shape[0]
        for end in range(R):
            win = P[max(0, end - self.W + 1) : end + 1]
            if int(win.any(axis=0).sum()) > self.lam:
                return False
            for i in np.flatnonzero(win.any(axis=0)):
                rounds = np.flatnonzero(win[:, i])
                if rounds[-1] - rounds[0] + 1 > self.B:
                    return False
        return True


@dataclass(slots=True, kw_only=True)
class ArbitraryModel:
    """(N, W', lambda')-arbitrary model as recalled in reference/sgc.md section 2 (not re-checked
    against the paper's appendix): in every window of W' rounds each worker straggles in at most N
    rounds (anywhere) and at most lam distinct workers straggle. No scheme here is adapted to it."""

    N: int
    W: int
    lam: int

    def __post_init__(self) -> None:
        _ints(self, "N", "W", "lam")
        if self.N < 0 or self.W < 1 or self.lam < 0:
            raise ValueError(f"arbitrary model needs N >= 0, W' >= 1, lambda' >= 0; got {self}")

    @property
    def lookback(self) -> int:
        return self.W - 1

    def window_ok(self, prev: np.ndarray, row: np.ndarray) -> bool:
        prev = prev[-(self.W - 1) :] if self.W > 1 else prev[:0]
        win = np.vstack([prev, row[None]])
        return int(win.any(axis=0).sum()) <= self.lam and int(win.sum(axis=0).max()) <= self.N

    def admissible(self, pattern: np.ndarray) -> bool:
        P = np.asarray(pattern, dtype=bool)
        for end in range(P.shape[0]):
            win = P[max(0, end - self.W + 1) : end + 1]
            if (
                int(win.any(axis=0).sum()) > self.lam
                or int(win.sum(axis=0).max(initial=0)) > self.N
            ):
                return False
        return True


StragglerModel = PerRoundModel | BurstyModel | ArbitraryModel


def admissible_incremental(model: StragglerModel, pattern: np.ndarray) -> bool:
    """The incremental oracle run over a whole pattern (the twin of ``model.admissible``)."""
    P = np.asarray(pattern, dtype=bool)
    return all(model.window_ok(P[max(0, r - model.lookback) : r], P[r]) for r in range(P.shape[0]))
