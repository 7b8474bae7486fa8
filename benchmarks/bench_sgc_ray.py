"""Real Ray run on this machine: n actors (fractional CPUs), injected Gilbert-Elliott delays,
M round-robin MLPs on scikit-learn digits, every scheme decoding exact gradients.

Reports total time per scheme and rule set, final test accuracy per model against the uncoded
twin (same seeds, exact batch gradients), and a loss-vs-time plot per model. Writes
benchmarks/results/sgc_ray.{json,md,png}; prints a table and a JSON object as the last line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=120)
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--batch", type=int, default=160, help="samples per job (all schemes)")
    ap.add_argument("--scale", type=float, default=0.3, help="seconds scale of injected delays")
    ap.add_argument("--cpus-per-actor", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/sgc_ray")
    args = ap.parse_args()

    import ray

    from plait.sgc.bench import RULES
    from plait.sgc.plots import loss_vs_time
    from plait.sgc.ray_backend import RayBackend
    from plait.sgc.schemes import make_scheme
    from plait.sgc.traces import gilbert_elliott_trace, straggler_stats
    from plait.sgc.training import DigitsWorkload, TrainConfig, reference_train, train

    n, B = args.n, args.batch
    arms = [
        ("ignore", dict(unit=B // n), "plait"),
        ("uncoded", dict(unit=B // n), "paper"),
        ("gc", dict(s=1, unit=B // n), "paper"),
        ("gc", dict(s=1, unit=B // n), "plait"),
        ("sr-sgc", dict(B=1, W=2, lam=2, unit=B // n), "paper"),
        ("sr-sgc", dict(B=1, W=2, lam=2, unit=B // n), "plait"),
        ("m-sgc", dict(B=1, W=2, lam=3, unit=B // (n * 5)), "paper"),
        ("m-sgc", dict(B=1, W=2, lam=3, unit=B // (n * 5)), "plait"),
    ]
    cfg = TrainConfig(models=args.models, seed=args.seed, lr_min=0.5, lr_max=1.0)
    trace = gilbert_elliott_trace(
        n,
        args.jobs + 4,
        seed=args.seed,
        jitter=0.02 * args.scale,
        slow=(1.0 * args.scale, 3.0 * args.scale),
        tail_prob=0.0,
        p_enter_normal=0.05,
        p_enter_prone=0.2,
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    be = RayBackend(n, trace, DigitsWorkload(cfg, B), cpus_per_actor=args.cpus_per_actor)
    startup = time.perf_counter() - t0
    ref = reference_train(cfg, B, args.jobs)
    ref_acc = [ref.evaluate(m)[1] for m in range(cfg.models)]
    # warm-up: every actor imports torch and computes once (not timed)
    warm = make_scheme("uncoded", n, 2, unit=B // n)
    train(
        warm, lambda w: (setattr(be, "workload", w), be)[1], TrainConfig(models=1, seed=args.seed)
    )
    rows, curves = [], {}
    for name, params, rules in tqdm(arms, desc="ray schemes"):
        sc = make_scheme(name, n, args.jobs, **params)
        assert sc.job_size == B, (name, sc.job_size)

        def factory(w):
            be.workload, be.trace = w, trace
            return be

        wall = time.perf_counter()
        res, work, curve = train(sc, factory, cfg, RULES[rules](1.0))
        wall = time.perf_counter() - wall
        acc = [work.evaluate(m)[1] for m in range(cfg.models)]
        diff = max(float(np.abs(work.params[m] - ref.params[m]).max()) for m in range(cfg.models))
        label = f"{name}({','.join(f'{k}={v}' for k, v in params.items() if k != 'unit')})/{rules}"
        curves[label] = curve
        rows.append(
            dict(
                arm=label,
                total_time=res.total_time,
                wall=wall,
                wait_outs=res.wait_outs,
                extended=res.extended,
                accuracy=acc,
                equal_accuracy=acc == ref_acc,
                max_param_diff_vs_uncoded_twin=diff,
                load=float(sc.load()),
                grad_rel_error_mean=float(np.mean(res.grad_error)) if res.grad_error else 0.0,
                stragglers_per_round=float(np.mean([len(lg.stragglers) for lg in res.rounds])),
            )
        )
    be.shutdown()
    ray.shutdown()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    loss_vs_time(curves, args.out + ".png", f"Ray, n={n} actors, digits MLP x{cfg.models}")
    report = dict(
        machine=f"{platform.node()} 2-core CPU, no GPU (shared; other work may run)",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        ray=ray.__version__,
        settings=vars(args),
        actor_startup_s=startup,
        trace_stats=straggler_stats(trace, base=0.05),
        uncoded_twin_accuracy=ref_acc,
        arms=rows,
    )
    lines = [
        f"{'arm':34s} {'time (s)':>9s} {'wait-outs':>9s} {'ext':>4s} {'strag/rd':>8s} {'grad err':>8s}"
        "  accuracy (= twin?)"
    ]
    for r in rows:
        lines.append(
            f"{r['arm']:34s} {r['total_time']:9.2f} {r['wait_outs']:9d} {r['extended']:4d} "
            f"{r['stragglers_per_round']:8.2f} {r['grad_rel_error_mean']:8.4f}  "
            f"{np.round(r['accuracy'], 4).tolist()} {r['equal_accuracy']}"
        )
    text = "\n".join(lines)
    print(text)
    Path(args.out + ".json").write_text(json.dumps(report, indent=1))
    Path(args.out + ".md").write_text(
        f"# SGC on Ray ({report['date']})\n\n{report['machine']}, ray {ray.__version__}, "
        f"n={n} actors x {args.cpus_per_actor} CPU, {args.jobs} jobs, M={cfg.models}, "
        f"batch {B}.\n\n```\n{text}\n```\n\nUncoded twin accuracy: {ref_acc}\n\n"
        f"![loss vs time]({Path(args.out).name}.png)\n"
    )
    print(
        json.dumps(
            dict(
                arms={
                    r["arm"]: dict(time=round(r["total_time"], 2), equal=r["equal_accuracy"])
                    for r in rows
                }
            )
        )
    )


if __name__ == "__main__":
    main()
