"""Quick start for plait.sgc: simulate GC / SR-SGC / M-SGC on a calibrated trace, then train
4 digits MLPs round-robin with M-SGC on the virtual clock and check them against the uncoded twin.

Run: python examples/sgc_quickstart.py   (about 20 s on 2 CPU cores)
"""

from __future__ import annotations

import numpy as np

from plait.sgc import Master, VirtualBackend, VirtualConfig, make_scheme, paper_rules, plait_rules
from plait.sgc.traces import gilbert_elliott_trace


def simulate() -> None:
    trace = gilbert_elliott_trace(256, 204, seed=0)  # calibrated to reference/sgc.md section 5
    for name, params in [
        ("gc", dict(s=15)),
        ("sr-sgc", dict(B=2, W=3, lam=23)),
        ("m-sgc", dict(B=1, W=2, lam=27)),
    ]:
        for rules_name, rules in [("paper", paper_rules()), ("plait", plait_rules())]:
            scheme = make_scheme(name, 256, 200, **params)
            res = Master(rules).run(
                scheme, VirtualBackend(trace, VirtualConfig(c0=0.56, c1=2.2013))
            )
            print(
                f"{name:7s} {rules_name:6s} 200 jobs in {res.total_time:7.1f} s  wait-outs {res.wait_outs:3d}"
                f"  extended waits {res.extended:3d}  load {float(scheme.load()):.4f}"
            )


def train_round_robin() -> None:
    from plait.sgc.training import TrainConfig, reference_train, train

    scheme = make_scheme("m-sgc", 8, 80, B=1, W=2, lam=3, unit=4)  # T = 1, job = 160 samples
    cfg = TrainConfig(models=4, lr_min=0.5, lr_max=1.0)
    trace = gilbert_elliott_trace(
        8, scheme.n_rounds, seed=1, jitter=0.01, slow=(0.2, 0.6), tail_prob=0.0
    )
    res, work, curve = train(
        scheme,
        lambda w: VirtualBackend(trace, VirtualConfig(c0=0.05, c1=0.5), workload=w),
        cfg,
        plait_rules(),
    )
    twin = reference_train(cfg, scheme.job_size, 80)
    for m in range(cfg.models):
        print(
            f"model {m}: lr {cfg.lrs[m]:.2f} test acc {work.evaluate(m)[1]:.4f} (uncoded twin "
            f"{twin.evaluate(m)[1]:.4f}); max |param diff| {np.abs(work.params[m] - twin.params[m]).max():.1e}"
        )
    print(
        f"virtual time {res.total_time:.1f} s, {sum(len(lg.stragglers) for lg in res.rounds)} stragglers declared"
    )


if __name__ == "__main__":
    simulate()
    train_round_robin()
