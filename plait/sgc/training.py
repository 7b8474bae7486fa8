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


class TorchWorkload:
    """Any torch classifier and dataset: M copies of ``model_fn()`` (float64, seeded per model) as
    flat vectors, seeded batches of the training arrays. Picklable (Ray ships it to actors; the
    module is rebuilt there). ``loss_fn(outputs, y) -> per-sample losses`` (default cross-entropy).
    """

    def __init__(
        self, config: TrainConfig, job_size: int, *, model_fn, Xtr, ytr, Xte, yte, loss_fn=None
    ) -> None:
        import torch

        self.config, self.job_size = config, job_size
        self.model_fn, self.loss_fn = model_fn, loss_fn
        self.Xtr, self.ytr = np.asarray(Xtr, dtype=np.float64), np.asarray(ytr)
        self.Xte, self.yte = np.asarray(Xte, dtype=np.float64), np.asarray(yte)
        if len(self.Xtr) != len(self.ytr) or len(self.Xtr) == 0:
            raise ValueError(
                f"need as many training inputs as labels (> 0), got {len(self.Xtr)} and {len(self.ytr)}"
            )
        self._net = None
        self.params = []
        for m in range(config.models):
            torch.manual_seed(config.seed * 1000 + m)
            net = model_fn().double()
            self.params.append(
                torch.nn.utils.parameters_to_vector(net.parameters()).detach().numpy().copy()
            )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_net"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def _forward(self, p, x):
        """Outputs of the model with flat parameters ``p`` (P,) on inputs ``x`` (k, ...)."""
        import torch

        if self._net is None:
            self._net = self.model_fn().double()
        shapes = [(name, t.shape) for name, t in self._net.named_parameters()]
        params, o = {}, 0
        for name, sh in shapes:
            k = int(np.prod(sh))
            params[name] = p[o : o + k].view(sh)
            o += k
        return torch.func.functional_call(self._net, params, (x,))

    def _losses(self, out, y):
        import torch

        if self.loss_fn is not None:
            return self.loss_fn(out, y)
        return torch.nn.functional.cross_entropy(out, y, reduction="none")  # (k,)

    def model_of(self, job: int) -> int:
        return job % self.config.models

    def batch(self, job: int, size: int | None = None) -> np.ndarray:
        """Seeded sample indices of job ``job`` (depends only on seed, job and size)."""
        size = self.job_size if size is None else size
        rng = np.random.default_rng([self.config.seed, 7, job])
        n = len(self.ytr)
        return rng.choice(n, size, replace=size > n)

    # ---- worker side ---------------------------------------------------------------------
    def grad_sum(
        self, params: np.ndarray, idx: np.ndarray, weight: np.ndarray | None = None
    ) -> np.ndarray:
        """sum_k weight_k * grad of the loss of training sample idx[k], float64, shape (P,)."""
        import torch

        torch.set_num_threads(1)
        p = torch.tensor(params, dtype=torch.float64, requires_grad=True)
        x = torch.tensor(self.Xtr[idx], dtype=torch.float64)  # (k, ...)
        y = torch.as_tensor(self.ytr[idx])  # (k,)
        losses = self._losses(self._forward(p, x), y)  # (k,)
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
        return self.piece_vector(
            task.job, scheme.job_size, scheme.pieces(task), self.params[self.model_of(task.job)]
        )

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
            out = self._forward(torch.tensor(self.params[m]), torch.tensor(X))
            loss = self._losses(out, torch.as_tensor(y)).mean().item()
            acc = (out.argmax(1).numpy() == y).mean()
        return float(loss), float(acc)


class _MLP:
    """Picklable factory of the default digits MLP 64 -> hidden -> 10."""

    def __init__(self, hidden: int) -> None:
        self.hidden = hidden

    def __call__(self):
        import torch

        return torch.nn.Sequential(
            torch.nn.Linear(64, self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, 10)
        )


class DigitsWorkload(TorchWorkload):
    """scikit-learn digits (scaled to [0, 1], seeded train/test split) and an MLP per model."""

    def __init__(self, config: TrainConfig, job_size: int) -> None:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        perm = np.random.default_rng(config.seed).permutation(len(y))
        k = int(len(y) * (1 - config.test_frac))
        X = X / 16.0
        super().__init__(
            config,
            job_size,
            model_fn=_MLP(config.hidden),
            Xtr=X[perm[:k]],
            ytr=y[perm[:k]],
            Xte=X[perm[k:]],
            yte=y[perm[k:]],
        )


def check_round_robin(models: int, T: int) -> None:
    if models < T + 1:
        raise ValueError(
            f"round-robin training needs M >= T + 1 models, got M={models}, T={T}; "
            f"pass models >= {T + 1}"
        )


def reference_train(
    config: TrainConfig, job_size: int, n_jobs: int, workload_fn=None
) -> TorchWorkload:
    """Uncoded twin: apply the exact batch gradient of every job in job order.

    ``workload_fn(config, job_size) -> TorchWorkload`` defaults to ``DigitsWorkload``."""
    w = (workload_fn or DigitsWorkload)(config, job_size)
    for j in range(n_jobs):
        w.apply(j, w.grad_sum(w.params[w.model_of(j)], w.batch(j)))
    return w


def train(
    scheme,
    backend_factory,
    config: TrainConfig,
    master_config=None,
    progress=None,
    workload_fn=None,
):
    """Train M models round-robin with ``scheme`` on a backend built by ``backend_factory(workload)``.

    ``workload_fn(config, job_size) -> TorchWorkload`` picks the model and data (default digits MLP).
    Returns (RunResult, workload, curve) with curve = [(time, model, train loss)] per decoded job.
    """
    from plait.sgc.master import Master

    check_round_robin(config.models, scheme.T)
    work = (workload_fn or DigitsWorkload)(config, scheme.job_size)
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
