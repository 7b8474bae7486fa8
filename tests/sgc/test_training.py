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


@pytest.mark.parametrize("name,params,rules", [
    ("m-sgc", dict(B=1, W=2, lam=2), plait_rules()),
    ("sr-sgc", dict(B=1, W=3, lam=3), paper_rules()),
    ("gc", dict(s=2), plait_rules()),  # n=6, s=2 -> frc; s=3 below -> crc
    ("gc", dict(s=3), plait_rules()),
])
def test_coded_training_equals_uncoded_twin(name, params, rules) -> None:
    from plait.sgc.training import TrainConfig, reference_train, train

    sc = make_scheme(name, 6, 16, unit=2, **params)
    cfg = TrainConfig(models=max(2, sc.T + 1), lr_min=0.5, lr_max=1.0)
    tr = gilbert_elliott_trace(6, sc.n_rounds, seed=4, p_enter_normal=0.2)
    res, work, curve = train(sc, lambda w: VirtualBackend(tr, VirtualConfig(c0=0.1), workload=w), cfg, rules)
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
