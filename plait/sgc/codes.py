"""(n, s) gradient codes: fractional repetition, and the hybrid code that is stable for every (n, s).

A code has an encoding matrix ``B`` (n x n, float64): worker i sends ``f_i = sum_j B[i, j] g_j`` over
the s + 1 partitions in its support. For a survivor set I that the code accepts there is ``a`` with
``a^T B[I, :] = 1^T``, so ``sum_i a_i f_i = sum_j g_j``.

Kinds (``auto`` picks ``frc`` when (s + 1) divides n, else ``hybrid``):
- ``frc``: fractional repetition, n / (s + 1) groups of s + 1 workers; exact 0/1 decoding.
- ``hybrid``: block diagonal. n = q (s + 1) + r; the r extra workers are spread over the q blocks,
  so a block has m = s + k workers (k - 1 of the extras): k = 1 blocks are FRC groups, k >= 2
  blocks are small codes from ``plait.sgc.blocks`` (linear for k = 2, the real cyclic MDS code or
  a random one for larger k, picked by measurement). Any s stragglers leave every block at least
  k survivors; blocks decode independently, so a pattern decodes iff every block does.
- ``crc`` / ``dft``: one block of all n workers (Tandon et al.'s cyclic repetition code / the real
  cyclic MDS code of Raviv et al.); kept for measurement, they are badly conditioned at large n.

Decodability is decided by the numbers: ``status`` is "ok" only when every block's decoding
coefficients pass the residual and amplification checks of ``plait.sgc.blocks`` (or the block was
proven by enumerating every k-subset). numpy only (no torch): this module is scheme logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from plait.sgc.blocks import BlockCode, block_code

KINDS = ("auto", "frc", "hybrid", "crc", "dft")


def hybrid_layout(n: int, s: int) -> list[int]:
    """Block dimensions k_b (block b has s + k_b workers; sum = n). Small k where possible,
    odd k (trigonometric designs) or k = 2 (linear) preferred, else balanced."""
    q, r = divmod(n, s + 1)
    if r == 0:
        return [1] * q
    if r <= 2 * q:  # extras of 1 or 2 per block: k in {2, 3}
        two = max(0, r - q)
        return [3] * two + [2] * (r - 2 * two) + [1] * (q - r + two)
    x, rem = divmod(r, 4)  # extras of 4 (k = 5) plus a remainder of 1, 2 or 2 + 1
    parts = [4] * x + {0: [], 1: [1], 2: [2], 3: [2, 1]}[rem]
    if len(parts) <= q:
        return [p + 1 for p in parts] + [1] * (q - len(parts))
    base, extra = divmod(r, q)
    return [base + 2] * extra + [base + 1] * (q - extra)


@dataclass(slots=True, kw_only=True)
class GradientCode:
    """An (n, s) gradient code over n partitions; tolerates any <= s stragglers."""

    n: int  # workers = partitions
    s: int  # stragglers tolerated (<= s, not < s)
    kind: str = "auto"  # see KINDS
    seed: int = 0  # seed of crc's random design
    B: np.ndarray = field(init=False, repr=False)  # (n, n) encoding matrix, float64
    blocks: list[tuple[int, BlockCode]] = field(init=False, repr=False)  # (first worker, block)
    _starts: np.ndarray = field(init=False, repr=False)  # (blocks,) first worker of each block
    _ks: np.ndarray = field(init=False, repr=False)  # (blocks,) survivors each block needs
    _numeric: list[int] = field(init=False, repr=False)  # blocks not proven by enumeration
    _supports: list[list[int]] = field(init=False, repr=False)
    _cache: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("n", "s", "seed"):
            v = getattr(self, name)
            if type(v) is not int and not isinstance(v, np.integer):  # 2.0 or True is refused
                raise TypeError(f"gradient code needs an int {name}, got {type(v).__name__} {v!r}")
            setattr(self, name, int(v))
        if self.n < 1:
            raise ValueError(f"gradient code needs n >= 1 workers, got n={self.n}; pass n >= 1")
        if not 0 <= self.s < self.n:
            raise ValueError(
                f"gradient code needs 0 <= s < n, got s={self.s}, n={self.n}; choose s in [0, {self.n - 1}]"
            )
        if self.kind not in KINDS:
            raise ValueError(f"unknown code kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind == "auto":
            self.kind = "frc" if self.n % (self.s + 1) == 0 else "hybrid"
        n, s = self.n, self.s
        if self.kind == "frc" and n % (s + 1):
            raise ValueError(
                f"fractional repetition needs (s+1) | n, got n={n}, s={s}; use kind='hybrid'"
            )
        if self.kind == "dft" and (n - s) % 2 == 0:
            raise ValueError(f"a real cyclic MDS code needs n - s odd, got n={n}, s={s}")
        if self.kind in ("frc", "hybrid"):
            ks = hybrid_layout(n, s)
            codes = [block_code(s + k, k) for k in ks]
        else:
            design = "random" if self.kind == "crc" else "trig"
            codes = [block_code(n, n - s, "repeat" if s == n - 1 else design, self.seed)]
        starts = np.cumsum([0] + [c.m for c in codes[:-1]])
        self.blocks = [(int(o), c) for o, c in zip(starts, codes)]
        self._starts, self._ks = starts, np.array([c.k for c in codes])
        self._numeric = [b for b, c in enumerate(codes) if not c.proven and c.k > 1]
        self.B = np.zeros((n, n))
        for o, c in self.blocks:
            self.B[o : o + c.m, o : o + c.m] = c.B
        self._supports = [[int(j) for j in np.flatnonzero(row)] for row in self.B]

    @property
    def load(self) -> float:
        """Fraction of one job's data a worker processes: (s + 1) / n."""
        return (self.s + 1) / self.n

    def support(self, i: int) -> list[int]:
        """Partitions worker i combines (s + 1 of them)."""
        return self._supports[i]

    def layout(self) -> list[dict]:
        """Per block: workers m, dimension k, design, proven, worst bound seen at construction."""
        return [
            dict(
                m=c.m,
                k=c.k,
                design=c.design,
                proven=c.proven,
                worst_bound=c.worst if np.isfinite(c.worst) else None,
            )
            for _, c in self.blocks
        ]

    def mask(self, survivors: np.ndarray) -> np.ndarray:
        """``survivors`` as a bool array of shape (n,): ValueError for another shape, TypeError
        for values other than bools or 0/1 (a short mask would silently leave workers out)."""
        alive = np.asarray(survivors)
        if alive.shape != (self.n,):
            raise ValueError(f"survivors must be a mask of shape ({self.n},), one entry per "
                             f"worker, got shape {alive.shape}")  # fmt: skip
        if alive.dtype != bool:
            if not np.issubdtype(alive.dtype, np.integer) or not np.isin(alive, (0, 1)).all():
                raise TypeError(f"survivors must be a bool (or 0/1) mask, got {alive.dtype}")
            alive = alive.astype(bool)
        return alive

    def status(self, survivors: np.ndarray) -> str:
        """ "ok" (decodes within the numerical promise), "rows" (too few survivors in a block) or
        "numeric" (enough survivors but ill-conditioned: wait for more). ``survivors`` (n,) bool."""
        alive = self.mask(survivors)
        counts = np.add.reduceat(alive.astype(np.int64), self._starts)
        if (counts < self._ks).any():
            return "rows"
        for b in self._numeric:
            o, c = self.blocks[b]
            if c.status(alive[o : o + c.m]) != "ok":
                return "numeric"
        return "ok"

    def decodable(self, survivors: np.ndarray) -> bool:
        """Whether the sum decodes from the rows in ``survivors`` (bool mask, shape (n,)).

        FRC: every group keeps a survivor (may exceed s erasures). Hybrid: every block keeps its
        k survivors and its decoding passes the numerical checks; any <= s erasures leave enough.
        """
        return self.status(survivors) == "ok"

    def decode_vector(self, survivors: np.ndarray) -> np.ndarray:
        """Coefficients a (shape (n,), zero off survivors) with a^T B = 1^T; cached per set."""
        alive = self.mask(survivors)
        key = np.packbits(alive).tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        why = self.status(alive)
        if why != "ok":
            detail = "too few survivors" if why == "rows" else "numerically ill-conditioned"
            raise ValueError(
                f"survivor set of size {int(alive.sum())} cannot decode an (n={self.n}, s={self.s}) "
                f"{self.kind} code ({detail}); wait for more workers"
            )
        a = np.zeros(self.n)
        for o, c in self.blocks:
            a[o : o + c.m] = c.solve(alive[o : o + c.m]).a
        if len(self._cache) >= 100_000:
            self._cache.clear()
        self._cache[key] = a
        return a

    def condition(self, survivors: np.ndarray) -> float:
        """Largest 2-norm condition number of a block's decoding system C[S] (1.0 for FRC)."""
        alive = self.mask(survivors)
        worst = 1.0
        for o, c in self.blocks:
            rows = np.flatnonzero(alive[o : o + c.m])
            if c.k > 1 and len(rows):
                sv = np.linalg.svd(c.C[rows], compute_uv=False)
                worst = max(worst, float(sv[0] / sv[-1]) if sv[-1] > 0 else np.inf)
        return worst

    def amplification(self, a: np.ndarray) -> float:
        """max_p sum_i |a_i| |B_ip|: how much decoding can amplify the workers' rounding errors."""
        return float((np.abs(a) @ np.abs(self.B)).max())

    def conditioning(self, max_sets: int = 20) -> dict:
        """Condition numbers and amplification over (up to ``max_sets``) cached decodes."""
        keys = list(self._cache)[:max_sets]
        masks = [np.unpackbits(np.frombuffer(k, np.uint8))[: self.n].astype(bool) for k in keys]
        return dict(
            kind=self.kind,
            blocks=len(self.blocks),
            max_block_k=int(self._ks.max()),
            proven=not self._numeric,
            sets=len(self._cache),
            max_condition=max((self.condition(m) for m in masks), default=1.0),
            max_amplification=max((self.amplification(self._cache[k]) for k in keys), default=1.0),
            max_abs_coefficient=max(
                (float(np.abs(self._cache[k]).max()) for k in keys), default=1.0
            ),
        )

    def decode(self, results: dict[int, np.ndarray]) -> np.ndarray:
        """Sum of partial gradients from worker -> coded vector (float64)."""
        bad = [i for i in results
               if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n]  # fmt: skip
        if bad:
            raise ValueError(f"results are keyed by worker index 0..{self.n - 1}, got {bad[0]!r}")
        mask = np.zeros(self.n, dtype=bool)
        mask[list(results)] = True
        a = self.decode_vector(mask)
        return sum(
            a[i] * np.asarray(v, dtype=np.float64) for i, v in results.items() if a[i] != 0.0
        )
