"""Round-robin training of M >= T + 1 models with exactly decoded gradients (torch imported lazily).

Job t is a gradient of model t mod M on a seeded batch of ``job_size`` digits samples; a model is
not touched again before round t + M > t + T, so no gradient is stale. A mini-task's vector is
sum(coeff * sum of per-sample gradients over its sample ranges) (float64, loss reduction 'sum');
the master decodes the batch sum and applies ``params -= lr * g / job_size``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True, kw_only=True)
class TrainConfig:
    """Models, data and optimiser of the round-robin run."""

    models: int = 4  # M, must be >= T + 1 of the scheme
    hidden: int = 32  # MLP hidden width (64 -> hidden -> 10)
    lr_min: float = 0.05  # learning rates linspace(lr_min, lr_max, M) (a small sweep)
    lr_max: float = 0.2
    seed: int = 0
    test_frac: float = 0.25
    lrs: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.models < 1 or self.hidden < 1:
            raise ValueError(f"need models >= 1 and hidden >= 1, got {self.models}, {self.hidden}")
        if not 0 < self.lr_min <= self.lr_max:
            raise ValueError(f"need 0 < lr_min <= lr_max, got {self.lr_min}, {self.lr_max}")
        self.lrs = list(np.linspace(self.lr_min, self.lr_max, self.models))


class DigitsWorkload:
    """scikit-learn digits, M MLPs as flat float64 vectors, seeded batches. Picklable (Ray)."""

    def __init__(self, config: TrainConfig, job_size: int) -> None:
        from sklearn.datasets import load_digits

        self.config, self.job_size = config, job_size
        X, y = load_digits(return_X_y=True)
        rng = np.random.default_rng(config.seed)
        perm = rng.permutation(len(y))
        k = int(len(y) * (1 - config.test_frac))
        X = X / 16.0
        self.Xtr, self.ytr = X[perm[:k]], y[perm[:k]]
        self.Xte, self.yte = X[perm[k:]], y[perm[k:]]
        h = config.hidden
        self.shapes = [(64, h), (h,), (h, 10), (10,)]
        self.params = []
        for m in range(config.models):
            r = np.random.default_rng([config.seed, 1000 + m])
            parts = [r.normal(0, 1 / np.sqrt(64), (64, h)), np.zeros(h), r.normal(0, 1 / np.sqrt(h), (h, 10)), np.zeros(10)]
            self.params.append(np.concatenate([p.ravel() for p in parts]))

    def model_of(self, job: int) -> int:
        return job % self.config.models

    def batch(self, job: int, size: int | None = None) -> np.ndarray:
        """Seeded sample indices of job ``job`` (depends only on seed, job and size)."""
        size = self.job_size if size is None else size
        rng = np.random.default_rng([self.config.seed, 7, job])
        n = len(self.ytr)
        return rng.choice(n, size, replace=size > n)

    # ---- worker side ---------------------------------------------------------------------
    def _split(self, p):
        out, o = [], 0
        for sh in self.shapes:
            k = int(np.prod(sh))
            out.append(p[o : o + k].view(*sh))
            o += k
        return out

    def grad_sum(self, params: np.ndarray, idx: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
        """sum_k weight_k * grad of the cross-entropy of sample idx[k], float64, shape (P,)."""
        import torch

        torch.set_num_threads(1)
        p = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        W1, b1, W2, b2 = self._split(p)
        x = torch.tensor(self.Xtr[idx], dtype=torch.float64)  # (k, 64)
        y = torch.tensor(self.ytr[idx], dtype=torch.long)  # (k,)
        logits = torch.relu(x @ W1 + b1) @ W2 + b2  # (k, 10)
        losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")  # (k,)
        loss = losses.sum() if weight is None else (losses * torch.tensor(weight)).sum()
        (g,) = torch.autograd.grad(loss, p)
        return g.numpy()

    def piece_vector(self, job: int, size: int, pieces, params) -> np.ndarray:
        """One backward for the whole mini-task: per-sample weights = the pieces' coefficients."""
        idx = self.batch(job, size)
        keep = [(a, b, c) for a, b, c in pieces if c != 0.0]
        sel = np.concatenate([idx[a:b] for a, b, _ in keep])
        w = np.concatenate([np.full(b - a, c) for a, b, c in keep])
        return self.grad_sum(params, sel, w)

    # ---- master side ---------------------------------------------------------------------
    def snapshot(self, jobs) -> dict[int, np.ndarray]:
        return {self.model_of(j): self.params[self.model_of(j)].copy() for j in jobs}

    def task_vector(self, task, scheme) -> np.ndarray:
        return self.piece_vector(task.job, scheme.job_size, scheme.pieces(task), self.params[self.model_of(task.job)])

    def true_grad(self, job: int, scheme) -> np.ndarray:
        return self.grad_sum(self.params[self.model_of(job)], self.batch(job))

    def apply(self, job: int, grad: np.ndarray) -> None:
        m = self.model_of(job)
        self.params[m] = self.params[m] - self.config.lrs[m] * grad / self.job_size

    def evaluate(self, m: int, split: str = "test") -> tuple[float, float]:
        """(mean loss, accuracy) of model m."""
        import torch

        X, y = (self.Xte, self.yte) if split == "test" else (self.Xtr, self.ytr)
        with torch.no_grad():
            W1, b1, W2, b2 = self._split(torch.tensor(self.params[m]))
            logits = torch.relu(torch.tensor(X) @ W1 + b1) @ W2 + b2
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y)).item()
            acc = (logits.argmax(1).numpy() == y).mean()
        return float(loss), float(acc)


def check_round_robin(models: int, T: int) -> None:
    if models < T + 1:
        raise ValueError(f"round-robin training needs M >= T + 1 models, got M={models}, T={T}; "
                         f"pass models >= {T + 1}")


def reference_train(config: TrainConfig, job_size: int, n_jobs: int) -> DigitsWorkload:
    """Uncoded twin: apply the exact batch gradient of every job in job order."""
    w = DigitsWorkload(config, job_size)
    for j in range(n_jobs):
        w.apply(j, w.grad_sum(w.params[w.model_of(j)], w.batch(j)))
    return w


def train(scheme, backend_factory, config: TrainConfig, master_config=None, progress=None):
    """Train M models round-robin with ``scheme`` on a backend built by ``backend_factory(workload)``.

    Returns (RunResult, workload, curve) with curve = [(time, model, train loss)] per decoded job.
    """
    from plait.sgc.master import Master

    check_round_robin(config.models, scheme.T)
    work = DigitsWorkload(config, scheme.job_size)
    backend = backend_factory(work)
    curve: list[tuple[int, int, float]] = []

    def on_job(j, g, r):
        if g is None:
            raise RuntimeError("training needs a backend that returns gradient payloads")
        work.apply(j, g)
        curve.append((r, work.model_of(j), work.evaluate(work.model_of(j), "train")[0]))

    res = Master(master_config).run(scheme, backend, on_job=on_job, progress=progress)
    ends = {lg.round: lg.start + lg.close for lg in res.rounds}
    timed = [(ends.get(r, 0.0), m, loss) for r, m, loss in curve]
    return res, work, timed
