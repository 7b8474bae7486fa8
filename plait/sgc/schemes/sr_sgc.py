"""SR-SGC (selective-repeat sequential gradient coding) for the (B, W, lambda)-bursty model.

Every round runs (n, s)-GC with s = ceil(B * lambda / (W - 1 + B)) on job r; job r - B gets a
second chance in round r: if v of its rows are still missing and the job does not decode yet,
v - s of those workers re-attempt their job-(r - B) row instead of their job-r row (more, in the
same order, while the chosen set would still be numerically undecodable). Workers that
straggled in round r - B are chosen first (the model forbids them from straggling again in round
r), then by index. Load (s + 1) / n, delay T = B. Requires B | (W - 1).
"""

from __future__ import annotations

import numpy as np

from plait.sgc.codes import GradientCode
from plait.sgc.schemes.base import MiniTask, RoundPlan, Scheme
from plait.sgc.schemes.simple import GCDecoding
from plait.sgc.stragglers import BurstyModel


def sr_sgc_s(B: int, W: int, lam: int) -> int:
    """The per-round GC tolerance SR-SGC uses: ceil(B * lambda / (W - 1 + B))."""
    return -(-B * lam // (W - 1 + B))


class SRSGC(GCDecoding, Scheme):
    name = "sr-sgc"

    def __init__(
        self,
        n: int,
        n_jobs: int,
        *,
        B: int,
        W: int,
        lam: int,
        unit: int = 1,
        code: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__(n, n_jobs)
        self._model = BurstyModel(B=B, W=W, lam=lam)  # validates 1 <= B < W and lambda >= 0
        if (W - 1) % B:
            raise ValueError(f"SR-SGC needs B to divide W - 1, got B={B}, W={W}; pick W = k*B + 1")
        if unit < 1:
            raise ValueError(f"unit (samples per partition) must be >= 1, got {unit}")
        self.B, self.W, self.lam = B, W, lam
        self.s = sr_sgc_s(B, W, lam)
        if self.s >= n:
            raise ValueError(
                f"SR-SGC needs s = ceil(B*lam/(W-1+B)) = {self.s} < n = {n}; lower lambda"
            )
        self.code = GradientCode(n=n, s=self.s, kind=code, seed=seed)
        self.T = B
        self.unit = unit
        self.job_size = n * unit
        self.missing: list[np.ndarray] = []  # per round: workers whose round-r results were lost
        self.clean: list[bool] = [True]  # clean[u]: no re-attempt pending at the start of round u
        self._plan: RoundPlan | None = None

    @property
    def model(self):
        return self._model

    def group_sizes(self) -> list[int]:
        return [self.n]

    def _reattempters(self, r: int) -> list[int]:
        j = r - self.B
        if not 0 <= j < self.n_jobs or self.job_ok(j, self._masks(j)):
            return []
        got = self._masks(j)[0]
        strag = self.missing[j]
        order = [int(i) for i in sorted(np.flatnonzero(~got), key=lambda i: (not strag[i], i))]
        need = max(0, len(order) - self.s)
        chosen, trial = order[:need], got.copy()
        trial[chosen] = True
        for i in order[need:]:  # the count left a numerically ill-conditioned set: add rows
            if self.job_ok(j, [trial]):
                break
            chosen.append(i)
            trial[i] = True
        return chosen

    def _assign(self, r: int) -> list[list[MiniTask]]:
        re = set(self._reattempters(r))
        out: list[list[MiniTask]] = []
        for i in range(self.n):
            if i in re:
                out.append([MiniTask(r - self.B, 0, i)])
            elif r < self.n_jobs:
                out.append([MiniTask(r, 0, i)])
            else:
                out.append([])
        return out

    def plan(self, r: int) -> RoundPlan:
        self._plan = super().plan(r)
        return self._plan

    def _is_reattempt(self, r: int, t: MiniTask) -> bool:
        return t.job < r

    # ---- bookkeeping for the two admissibility modes ---------------------------------------
    def _clean_after(self, r: int, rows_r: np.ndarray | None) -> bool:
        """No job in [r - B + 1, r] needs a re-attempt (rows_r: job r's delivered rows)."""
        for j in range(max(0, r - self.B + 1), min(r, self.n_jobs - 1) + 1):
            got = rows_r if (j == r and rows_r is not None) else self._masks(j)[0]
            if not self.job_ok(j, [got]):
                return False
        return True

    def _after_commit(self, plan: RoundPlan, delivered: np.ndarray) -> None:
        self.missing.append(~delivered)
        self.clean.append(self._clean_after(plan.round, None))

    def epoch_start(self, r: int, missing: np.ndarray) -> int:
        if r < self.n_jobs:
            assert self._plan is not None and self._plan.round == r
            rows = np.array([bool(ts) and ts[0].job == r for ts in self._plan.tasks]) & ~missing
        else:
            rows = None
        if self._clean_after(r, rows):
            return r + 1
        return max(u for u in range(r + 1) if self.clean[u])

    def model_ok(self, r: int, missing: np.ndarray, *, paper: bool = False) -> bool:
        """paper=True applies the authors' exemption: a past round drops out of the window when
        nobody re-attempted in it and it had <= s stragglers (GC alone covered it)."""
        prev = self._history(0, r, False)
        if paper and len(prev):
            lo = r - len(prev)
            keep = [
                not (self.reattempted[u] == 0 and self.declared[u].sum() <= self.s)
                for u in range(lo, r)
            ]
            prev = prev & np.array(keep)[:, None]
        return self.model.window_ok(prev, missing)
