"""Round-robin training: decoded gradients equal the uncoded twin's, M >= T + 1 enforced."""

from __future__ import annotations

import numpy as np
import pytest

from plait.sgc.master import paper_rules, plait_rules
from plait.sgc.schemes import make_scheme
from plait.sgc.traces import gilbert_elliott_trace
from plait.sgc.virtual import VirtualBackend, VirtualConfig

pytest.importorskip("torch")
pytest.importorskip("sklearn")


@pytest.mark.parametrize(
    "name,params,rules",
    [
        ("m-sgc", dict(B=1, W=2, lam=2), plait_rules()),
        ("sr-sgc", dict(B=1, W=3, lam=3), paper_rules()),
        ("gc", dict(s=2), plait_rules()),  # n=6, s=2 -> frc; s=3 below -> crc
        ("gc", dict(s=3), plait_rules()),
    ],
)
def test_coded_training_equals_uncoded_twin(name, params, rules) -> None:
    from plait.sgc.training import TrainConfig, reference_train, train

    sc = make_scheme(name, 6, 16, unit=2, **params)
    cfg = TrainConfig(models=max(2, sc.T + 1), lr_min=0.5, lr_max=1.0)
    tr = gilbert_elliott_trace(6, sc.n_rounds, seed=4, p_enter_normal=0.2)
    res, work, curve = train(
        sc, lambda w: VirtualBackend(tr, VirtualConfig(c0=0.1), workload=w), cfg, rules
    )
    ref = reference_train(cfg, sc.job_size, 16)
    for m in range(cfg.models):
        assert np.abs(work.params[m] - ref.params[m]).max() <= 1e-10
        assert work.evaluate(m) == pytest.approx(ref.evaluate(m), rel=1e-9)
    assert len(curve) == 16 and sum(len(lg.stragglers) for lg in res.rounds) > 0


def test_round_robin_needs_enough_models() -> None:
    from plait.sgc.training import TrainConfig, train

    sc = make_scheme("m-sgc", 4, 4, B=1, W=3, lam=1)  # T = 2
    with pytest.raises(ValueError, match="M >= T \\+ 1"):
        train(sc, lambda w: None, TrainConfig(models=2))
    with pytest.raises(ValueError):
        TrainConfig(models=0)


def test_any_torch_model_and_dataset() -> None:
    import torch

    from plait.sgc.training import TorchWorkload, TrainConfig, reference_train, train

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 1, 8, 8)), rng.integers(0, 3, size=200)

    def make(cfg, size):
        def cnn():
            return torch.nn.Sequential(
                torch.nn.Conv2d(1, 2, 3),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(72, 3),
            )

        return TorchWorkload(
            cfg, size, model_fn=cnn, Xtr=X[:150], ytr=y[:150], Xte=X[150:], yte=y[150:]
        )

    sc = make_scheme("sr-sgc", 5, 10, B=1, W=2, lam=2, unit=3)
    cfg = TrainConfig(models=2, lr_min=0.1, lr_max=0.2)
    tr = gilbert_elliott_trace(5, sc.n_rounds, seed=2, p_enter_normal=0.3)
    res, work, _ = train(
        sc,
        lambda w: VirtualBackend(tr, VirtualConfig(), workload=w),
        cfg,
        plait_rules(),
        workload_fn=make,
    )
    ref = reference_train(cfg, sc.job_size, 10, workload_fn=make)
    for m in range(2):
        assert np.abs(work.params[m] - ref.params[m]).max() <= 1e-10
    assert any(lg.stragglers for lg in res.rounds)
    with pytest.raises(ValueError, match="as many"):
        TorchWorkload(
            cfg, 4, model_fn=lambda: torch.nn.Linear(2, 2), Xtr=X[:3], ytr=y[:2], Xte=X, yte=y
        )
