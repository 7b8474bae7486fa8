"""`plait sgc simulate | search | train | bench`: gradient coding from the command line.

simulate: one scheme on a trace (virtual clock), paper vs plait rules; search: probe-then-switch
and oracle-best over the parameter grid; train: round-robin training on digits (virtual or Ray);
bench: the paired comparison on a few seeds. All take --json (one JSON object on stdout) and
most take --plot PATH. No torch import unless training.
"""

from __future__ import annotations

import argparse
import json
import sys


def _scheme_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheme", default="m-sgc", help="uncoded | ignore | gc | sr-sgc | m-sgc")
    p.add_argument("--s", type=int, default=None, help="GC: stragglers tolerated per round")
    p.add_argument("--B", type=int, default=None, help="SGC burst length")
    p.add_argument("--W", type=int, default=None, help="SGC window")
    p.add_argument("--lam", type=int, default=None, help="SGC: distinct stragglers per window")
    p.add_argument("--n", type=int, default=256, help="workers")
    p.add_argument("--jobs", type=int, default=496, help="gradient jobs")
    p.add_argument("--mu", type=float, default=1.0, help="cut at (1 + mu) x fastest")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _trace_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--trace", default="ge", help="ge | iid | path to a .npz trace")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--c0", type=float, default=0.56, help="fixed seconds per round (virtual clock)")
    p.add_argument("--c1", type=float, default=2.2013, help="seconds per unit of normalized load")


def _params(args) -> dict:
    if args.scheme == "gc":
        return dict(s=15 if args.s is None else args.s)
    if args.scheme in ("sr-sgc", "m-sgc"):
        d = dict(B=1, W=2, lam=27) if args.scheme == "m-sgc" else dict(B=2, W=3, lam=23)
        for k in ("B", "W", "lam"):
            if getattr(args, k) is not None:
                d[k] = getattr(args, k)
        return d
    return {}


def _emit(args, payload: dict, text: str) -> int:
    print(json.dumps(payload) if args.json else text)
    return 0


def cmd_simulate(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import Arm, make_trace, run_arm

    tr = make_trace(args.trace, args.n, args.jobs + 8, args.seed)
    if args.save_trace:
        tr.save(args.save_trace)
    out: dict = {}
    lines: list[str] = []
    log: list | None = [] if args.log else None
    for rules in tqdm(args.rules.split(","), desc="simulate", disable=args.json, file=sys.stderr):
        arm = Arm(scheme=args.scheme, params=_params(args), rules=rules)
        r = run_arm(arm, tr, args.jobs, mu=args.mu, c0=args.c0, c1=args.c1, log=log)
        out[arm.label] = {k: v for k, v in r.items() if k != "done"}
        lines.append(
            f"{arm.label:44s} runtime {r['runtime']:9.1f} s  wait-outs {r['wait_outs']:4d}  "
            f"extended {r['extended']:4d}  load {r['load']:.5f}"
        )
        out[arm.label]["_done"] = r["done"]
    if log is not None:
        with open(args.log, "w") as f:
            f.writelines(json.dumps(rec) + "\n" for rec in log)
    if args.plot:
        from plait.sgc.plots import jobs_vs_time

        jobs_vs_time(
            {k: v["_done"] for k, v in out.items()}, args.plot, f"{args.trace} trace, n={args.n}"
        )
    for v in out.values():
        v.pop("_done")
    return _emit(args, out, "\n".join(lines))


def cmd_search(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import make_trace
    from plait.sgc.search import grid, oracle_best, probe_then_switch

    tr = make_trace(args.trace, args.n, args.jobs + args.max_delay, args.seed)
    bar = tqdm(
        total=len(grid(args.n, args.max_delay)) * (1 + args.oracle),
        desc="search",
        disable=args.json,
        file=sys.stderr,
    )
    kw = dict(mu=args.mu, c0=args.c0, c1=args.c1)
    res = probe_then_switch(
        tr,
        probe=args.probe,
        n_jobs=args.jobs,
        max_delay=args.max_delay,
        rules=args.rules,
        progress=bar.update,
        **kw,
    )
    out = dict(probe_then_switch={k: v for k, v in res.items() if k != "probe_scores"})
    if args.oracle:
        o = oracle_best(
            tr,
            n_jobs=args.jobs,
            max_delay=args.max_delay,
            rules=args.rules,
            progress=bar.update,
            **kw,
        )
        out["oracle_best"] = dict(choice=o["choice"], total=o["total"])
    bar.close()
    if args.plot:
        import re

        from plait.sgc.plots import runtime_vs_load
        from plait.sgc.schemes import make_scheme

        pts = []
        for key, t in res["probe_scores"].items():
            m = re.match(r"([a-z-]+)(\{.*\})", key)
            if m is None:
                continue
            name, p = m.groups()
            params = eval(p, {})  # noqa: S307 - our own repr of a dict of ints
            pts.append((name, float(make_scheme(name, args.n, 1, **params).load()), t))
        runtime_vs_load(pts, args.plot, f"probe of {args.probe} rounds")
    text = json.dumps(out, indent=1)
    return _emit(args, out, text)


def cmd_train(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import RULES
    from plait.sgc.schemes import make_scheme
    from plait.sgc.traces import gilbert_elliott_trace
    from plait.sgc.training import TrainConfig, reference_train, train

    params = _params(args)
    sc = make_scheme(args.scheme, args.n, args.jobs, unit=args.unit, **params)
    cfg = TrainConfig(models=args.models, seed=args.seed, lr_min=args.lr_min, lr_max=args.lr_max)
    tr = gilbert_elliott_trace(
        args.n,
        sc.n_rounds + 1,
        seed=args.seed,
        jitter=0.02 * args.scale,
        slow=(0.3 * args.scale, 1.0 * args.scale),
        tail_prob=0.0,
    )
    if args.backend == "ray":
        from plait.sgc.ray_backend import RayBackend

        def factory(w):
            return RayBackend(
                args.n, tr, w, address=args.address, cpus_per_actor=args.cpus_per_actor
            )
    else:
        from plait.sgc.virtual import VirtualBackend, VirtualConfig

        def factory(w):
            return VirtualBackend(tr, VirtualConfig(c0=args.c0, c1=args.c1), workload=w)

    bar = tqdm(total=sc.n_rounds, desc=f"train {sc.name}", disable=args.json, file=sys.stderr)
    res, work, curve = train(
        sc, factory, cfg, RULES[args.rules](args.mu), progress=lambda r: bar.update()
    )
    bar.close()
    ref = reference_train(cfg, sc.job_size, args.jobs)
    acc = [work.evaluate(m)[1] for m in range(cfg.models)]
    ref_acc = [ref.evaluate(m)[1] for m in range(cfg.models)]
    out = dict(
        scheme=sc.name,
        params=params,
        backend=args.backend,
        total_time=res.total_time,
        accuracy=acc,
        uncoded_reference_accuracy=ref_acc,
        equal_to_reference=acc == ref_acc,
        wait_outs=res.wait_outs,
        extended=res.extended,
    )
    if args.plot:
        from plait.sgc.plots import loss_vs_time

        loss_vs_time({sc.name: curve}, args.plot, f"{sc.name} on {args.backend}")
    return _emit(args, out, json.dumps(out, indent=1))


def cmd_bench(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import Arm, format_table, paired_comparison, summarize

    P = dict(gc=dict(s=15), sr=dict(B=2, W=3, lam=23), m=dict(B=1, W=2, lam=27))
    arms = [Arm(scheme="ignore"), Arm(scheme="uncoded", rules="paper")]
    for name, key in (("gc", "gc"), ("sr-sgc", "sr"), ("m-sgc", "m")):
        arms += [Arm(scheme=name, params=P[key], rules=r) for r in ("paper", "plait")]
    bar = tqdm(total=len(arms) * args.seeds, desc="bench", disable=args.json, file=sys.stderr)
    res = paired_comparison(
        arms,
        kind=args.trace,
        n=args.n,
        n_jobs=args.jobs,
        rounds=args.jobs + 4,
        seeds=list(range(args.seeds)),
        mu=args.mu,
        progress=bar.update,
    )
    bar.close()
    base = Arm(scheme="gc", params=P["gc"], rules="paper").label
    table = summarize(res, base)
    if args.plot:
        from plait.sgc.plots import jobs_vs_time

        jobs_vs_time({k: v[0]["done"] for k, v in res.items()}, args.plot, f"{args.trace} seed 0")
    return _emit(args, table, format_table(table, base))


def _clean_errors(fn):
    """Bad user input (ValueError) becomes one line on stderr and exit code 2, not a traceback."""

    def run(args) -> int:
        try:
            return fn(args)
        except ValueError as exc:
            print(f"plait sgc: error: {exc}", file=sys.stderr)
            return 2

    return run


def register(subparsers) -> None:
    sgc = subparsers.add_parser("sgc", help="sequential gradient coding (virtual clock and Ray)")
    sub = sgc.add_subparsers(dest="sgc_command", metavar="SGC_COMMAND")
    sgc.set_defaults(func=lambda a: (sgc.print_help(), 0)[1])

    p = sub.add_parser("simulate", help="one scheme on a trace, paper vs plait rules")
    _scheme_args(p)
    _trace_args(p)
    p.add_argument(
        "--rules", default="paper,plait", help="comma list of paper | earliest-model | plait"
    )
    p.add_argument("--save-trace", default=None, help="write the trace used to this .npz")
    p.add_argument("--log", default=None, help="per-round log (JSON lines; code conditioning last)")
    p.add_argument("--plot", default=None, help="jobs completed vs time (.png)")
    p.set_defaults(func=_clean_errors(cmd_simulate))

    p = sub.add_parser("search", help="probe-then-switch parameter search (and oracle-best)")
    _scheme_args(p)
    _trace_args(p)
    p.add_argument("--probe", type=int, default=80, help="uncoded probe rounds")
    p.add_argument("--max-delay", type=int, default=4)
    p.add_argument("--rules", default="plait")
    p.add_argument("--oracle", action="store_true", help="also the oracle-best arm (hindsight)")
    p.add_argument("--plot", default=None, help="probe runtime vs load (.png)")
    p.set_defaults(func=_clean_errors(cmd_search))

    p = sub.add_parser("train", help="round-robin training of M models on digits")
    _scheme_args(p)
    p.set_defaults(n=8, jobs=120, s=1, lam=3)  # small-n defaults (the paper's lam=27 needs n > 27)
    p.add_argument("--models", type=int, default=4, help="M >= T + 1")
    p.add_argument("--unit", type=int, default=4, help="samples per smallest piece")
    p.add_argument("--backend", choices=["virtual", "ray"], default="virtual")
    p.add_argument("--address", default=None, help="ray.init(address=...) for a cluster")
    p.add_argument("--cpus-per-actor", type=float, default=0.1)
    p.add_argument("--scale", type=float, default=0.2, help="seconds scale of injected delays")
    p.add_argument("--rules", default="plait")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr-min", type=float, default=0.5)
    p.add_argument("--lr-max", type=float, default=1.0)
    p.add_argument("--c0", type=float, default=0.05)
    p.add_argument("--c1", type=float, default=0.5)
    p.add_argument("--plot", default=None, help="loss vs time per model (.png)")
    p.set_defaults(func=_clean_errors(cmd_train))

    p = sub.add_parser("bench", help="paired comparison on a few seeds (virtual clock)")
    _scheme_args(p)
    p.add_argument("--trace", default="ge", help="ge | iid")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--plot", default=None, help="jobs completed vs time for seed 0 (.png)")
    p.set_defaults(func=_clean_errors(cmd_bench))
