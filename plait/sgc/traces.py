"""Straggler traces: ``delays[n, rounds]`` (float64 seconds of extra latency) plus metadata.

A worker's latency in round r is ``c0 + c1 * load + delays[i, r]`` on the virtual clock, or its
real compute time plus a ``delays[i, r]`` sleep on Ray. Generators (all seeded): i.i.d.
shifted-exponential, per-worker Gilbert-Elliott bursts calibrated to reference/sgc.md section 5,
admissible-adversarial (B, W, lambda) patterns, and violating patterns. Files are .npz.
"""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plait.errors import UsageError
from plait.outputs import atomic_file
from plait.sgc.stragglers import BurstyModel


@dataclass(slots=True, kw_only=True)
class Trace:
    """Extra latency per (worker, round) and where it came from."""

    delays: np.ndarray  # (n, R) float64 seconds
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = np.asarray(self.delays, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
            raise ValueError(
                f"trace delays must have shape (n_workers, rounds) with both >= 1, got {d.shape}; "
                "transpose or reshape the array"
            )
        if not np.isfinite(d).all() or (d < 0).any():
            raise ValueError("trace delays must be finite and >= 0 seconds; clip or drop bad cells")
        self.delays = d

    @property
    def n(self) -> int:
        return self.delays.shape[0]

    @property
    def rounds(self) -> int:
        return self.delays.shape[1]

    def check(self, n: int, rounds: int) -> None:
        """Raise unless this trace covers n workers and at least ``rounds`` rounds."""
        if self.n != n or self.rounds < rounds:
            raise ValueError(
                f"trace has shape {self.delays.shape} but the run needs ({n}, >= {rounds}); "
                "generate a trace with that many workers and rounds"
            )

    def save(self, path: str | Path) -> None:
        """Write a .npz at exactly ``path`` (no suffix added), whole or not at all."""
        with atomic_file(path) as tmp, open(tmp, "wb") as f:  # a file: savez adds no suffix
            np.savez_compressed(f, delays=self.delays, meta=json.dumps(self.meta))

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read a trace written by ``save`` (a .npz with 'delays' (n, R) and JSON 'meta')."""
        hint = "make one with `plait sgc simulate --save-trace PATH` or Trace.save"
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, EOFError, zipfile.BadZipFile):
            raise UsageError(f"{path}: not a .npz trace file; {hint}") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise UsageError(f"{path}: a bare array, not a .npz trace file; {hint}")
        with z:
            if "delays" not in z:
                raise UsageError(f"{path}: not a trace file (no 'delays' array); {hint}")
            try:
                delays = z["delays"]
                meta = json.loads(str(z["meta"])) if "meta" in z else {}
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}: its 'meta' is not JSON ({exc.msg}); {hint}") from None
            except (
                ValueError,
                OSError,
                EOFError,
                RecursionError,
                zipfile.BadZipFile,
                zlib.error,
            ) as exc:
                raise UsageError(
                    f"{path}: a damaged member inside the .npz ({exc}); {hint}"
                ) from None
            return cls(delays=delays, meta=meta if isinstance(meta, dict) else {})


def iid_trace(
    n: int,
    rounds: int,
    *,
    seed: int,
    shift: float = 0.0,
    scale: float = 0.19,
    tail_prob: float = 0.00005,
    tail: tuple[float, float] = (20.0, 38.0),
) -> Trace:
    """i.i.d. shifted-exponential delays, plus a rare uniform huge tail per cell."""
    rng = np.random.default_rng(seed)
    d = shift + rng.exponential(scale, size=(n, rounds))
    hit = rng.random((n, rounds)) < tail_prob
    d[hit] += rng.uniform(*tail, size=int(hit.sum()))
    return Trace(
        delays=d,
        meta=dict(
            source="iid", seed=seed, shift=shift, scale=scale, tail_prob=tail_prob, tail=list(tail)
        ),
    )


def gilbert_elliott_trace(
    n: int,
    rounds: int,
    *,
    seed: int,
    prone_frac: float = 0.25,
    p_enter_prone: float = 0.12,
    p_enter_normal: float = 0.02,
    p_exit: float = 0.92,
    storm_prob: float = 0.05,
    storm_mult: float = 4.0,
    jitter: float = 0.08,
    slow: tuple[float, float] = (0.6, 2.5),
    tail_prob: float = 0.00005,
    tail: tuple[float, float] = (20.0, 38.0),
) -> Trace:
    """Per-worker two-state (good/bad) Markov chains: a fraction ``prone_frac`` of workers enter
    the bad state more often; bad cells add ``slow`` seconds (a rare ``tail`` instead); ``storm``
    rounds multiply entry probabilities (over-dispersed straggler counts). Defaults are calibrated
    to the Lambda statistics in reference/sgc.md section 5 (see docs/sgc.md)."""
    rng = np.random.default_rng(seed)
    prone = rng.random(n) < prone_frac
    p_enter = np.where(prone, p_enter_prone, p_enter_normal)
    bad = np.zeros(n, dtype=bool)
    d = rng.exponential(jitter, size=(n, rounds))
    for r in range(rounds):
        mult = storm_mult if rng.random() < storm_prob else 1.0
        u = rng.random(n)
        bad = np.where(bad, u >= p_exit, u < np.minimum(1.0, p_enter * mult))
        k = int(bad.sum())
        d[bad, r] += rng.uniform(*slow, size=k)
    cells = rng.random((n, rounds)) < tail_prob
    d[cells] += rng.uniform(*tail, size=int(cells.sum()))
    return Trace(
        delays=d,
        meta=dict(
            source="gilbert-elliott",
            seed=seed,
            prone_frac=prone_frac,
            p_enter_prone=p_enter_prone,
            p_enter_normal=p_enter_normal,
            p_exit=p_exit,
            storm_prob=storm_prob,
            storm_mult=storm_mult,
            jitter=jitter,
            slow=list(slow),
            tail_prob=tail_prob,
            tail=list(tail),
        ),
    )


def adversarial_pattern(
    n: int, rounds: int, model: BurstyModel, *, seed: int, density: float = 1.0
) -> np.ndarray:
    """A random (B, W, lambda)-admissible pattern (R, n), greedy: each round, try workers in random
    order and add a burst start when the oracle still accepts; bursts continue up to B rounds."""
    rng = np.random.default_rng(seed)
    P = np.zeros((rounds, n), dtype=bool)
    for r in range(rounds):
        prev = P[max(0, r - model.lookback) : r]
        row = P[r]
        if r > 0:  # continue some bursts
            for i in np.flatnonzero(P[r - 1]):
                if rng.random() < 0.5:
                    row[i] = True
                    if not model.window_ok(prev, row):
                        row[i] = False
        for i in rng.permutation(n):
            if rng.random() < density * 0.5:
                row[i] = True
                if not model.window_ok(prev, row):
                    row[i] = False
    return P


def violating_pattern(n: int, rounds: int, model: BurstyModel, *, seed: int) -> np.ndarray:
    """An admissible pattern with one violation planted (a burst of B + 1, or lambda + 1 distinct)."""
    rng = np.random.default_rng(seed)
    P = adversarial_pattern(n, rounds, model, seed=seed, density=0.5)
    r0 = int(rng.integers(0, max(1, rounds - model.B - 1)))
    i = int(rng.integers(0, n))
    P[r0 : r0 + model.B + 1, i] = True
    if model.admissible(P):  # B + 1 did not fit (trace too short): break lambda instead
        P[r0, : min(n, model.lam + 1)] = True
    return P


def pattern_to_trace(pattern: np.ndarray, *, fast: float = 0.01, slow: float = 0.5) -> Trace:
    """Delays with a large gap: ``slow`` where the pattern (R, n) straggles, ``fast`` elsewhere."""
    P = np.asarray(pattern, dtype=bool)
    return Trace(
        delays=np.where(P.T, slow, fast), meta=dict(source="pattern", fast=fast, slow=slow)
    )


def straggler_stats(trace: Trace, *, mu: float = 1.0, base: float = 0.56) -> dict:
    """Stragglers under the (1 + mu) * fastest rule at load 0 (latency = base + delay): per-round
    mean/median/max, burst-length histogram, distinct stragglers per 2-round window."""
    lat = base + trace.delays  # (n, R)
    S = lat > (1.0 + mu) * lat.min(axis=0, keepdims=True)
    per = S.sum(axis=0)
    bursts: dict[int, int] = {}
    for i in range(S.shape[0]):
        run = 0
        for v in list(S[i]) + [False]:
            if v:
                run += 1
            elif run:
                bursts[run] = bursts.get(run, 0) + 1
                run = 0
    two = (S[:, 1:] | S[:, :-1]).sum(axis=0)
    return dict(
        mean=float(per.mean()),
        median=float(np.median(per)),
        max=int(per.max()),
        bursts={int(k): v for k, v in sorted(bursts.items())},
        distinct_2win_mean=float(two.mean()),
        distinct_2win_max=int(two.max()),
        median_latency=float(np.median(lat)),
        max_latency=float(lat.max()),
    )


def make_trace_stats_note(kind: str, n: int, rounds: int, seed: int = 0) -> dict:
    """Straggler statistics of the generator ``kind`` ("ge" or "iid") with its default parameters."""
    gen = gilbert_elliott_trace if kind == "ge" else iid_trace
    tr = gen(n, rounds, seed=seed)
    return dict(straggler_stats(tr), params=tr.meta)
