"""What `plait sgc simulate | search | train | bench` do (the parsers are in plait/sgc/cli.py).

Every command validates its arguments and its output paths before any work, prints its results
(a table, or one JSON object with --json) and only then draws the plot. Bad input raises
``UsageError`` / ``OutputError``; the CLI boundary prints it as one line and exits 2.
"""

from __future__ import annotations

import json
import math
import sys

from plait.arguments import require_extra
from plait.errors import UsageError
from plait.outputs import JsonlAppender, check_writable

SCHEME_DEFAULTS = {
    "gc": dict(s=15),
    "sr-sgc": dict(B=2, W=3, lam=23),
    "m-sgc": dict(B=1, W=2, lam=27),
}


def params_of(args) -> dict:
    """The scheme's parameters: its defaults overridden by --s / --B / --W / --lam."""
    d = dict(SCHEME_DEFAULTS.get(args.scheme, {}))
    for k in d:
        if getattr(args, k, None) is not None:
            d[k] = getattr(args, k)
    return d


# Upper bounds, so that a huge value is refused at once instead of allocating for minutes.
LIMITS = dict(n=4096, jobs=1_000_000, models=1024, unit=4096, seeds=1000, probe=1_000_000,
              max_delay=16)  # fmt: skip
MAX_TRACE_CELLS = 50_000_000  # workers x rounds of a generated trace (400 MB of float64)


def check_args(args, **bounds: float) -> None:
    """Raise UsageError for the first ``--name`` whose value is below its bound, above its
    `LIMITS` entry or not finite (skips None)."""
    for name, low in bounds.items():
        v = getattr(args, name, None)
        if v is None:
            continue
        flag = "--" + name.replace("_", "-")
        if not v >= low:  # also refuses nan
            raise UsageError(f"{flag} must be >= {low:g}, got {v:g}")
        if v == float("inf"):
            raise UsageError(f"{flag} must be a finite number, got {v:g}")
        if name in LIMITS and v > LIMITS[name]:
            raise UsageError(f"{flag} must be <= {LIMITS[name]}, got {v}")


def check_outputs(args, *flags: str) -> None:
    """Before the work: every output path given can be written (and is neither the input trace
    nor another output), plotting can be imported."""
    paths = [(f"--{f}", getattr(args, f.replace("-", "_"), None)) for f in flags]
    trace = getattr(args, "trace", None)
    inputs = [("--trace", trace)] if trace not in (None, "ge", "iid") else []
    for i, (flag, path) in enumerate(paths):
        if path:
            check_writable(path, flag, inputs + [p for p in paths[:i] if p[1]])
    if getattr(args, "plot", None):
        require_extra("matplotlib", "ml", "--plot")


def check_cells(n: int, rounds: int) -> None:
    """Refuse a generated trace too large to hold (before it is allocated)."""
    if n * rounds > MAX_TRACE_CELLS:
        raise UsageError(f"a trace of {n} workers x {rounds} rounds is over {MAX_TRACE_CELLS:,} "
                         "cells; lower --n or --jobs")  # fmt: skip


def check_rules(names: list[str]) -> list[str]:
    from plait.sgc.bench import RULES

    if not names or any(not x for x in names):
        raise UsageError(f"--rules needs a comma list of {', '.join(RULES)}")
    for x in names:
        if x not in RULES:
            raise UsageError(f"unknown rules {x!r} in --rules; valid: {', '.join(RULES)}")
    return names


def load_trace(args, rounds_for):
    """The trace of --trace: generated with --n workers (default 256) and ``rounds_for(n)``
    rounds, or a .npz file whose shape must agree with --n (if given) and cover the run."""
    from plait.sgc.bench import make_trace

    if args.trace in ("ge", "iid"):
        n = 256 if args.n is None else args.n
        rounds = rounds_for(n)
        check_cells(n, rounds)
        return make_trace(args.trace, n, rounds, args.seed)
    tr = make_trace(args.trace, 0, 0, 0)
    if args.n is not None and args.n != tr.n:
        raise UsageError(f"--n {args.n} disagrees with {args.trace}, a trace of {tr.n} workers; "
                         f"drop --n or pass --n {tr.n}")  # fmt: skip
    need = rounds_for(tr.n)
    if tr.rounds < need:
        raise UsageError(f"{args.trace} has {tr.rounds} rounds but the run needs {need}; "
                         "lower --jobs or use a longer trace")  # fmt: skip
    return tr


def emit(args, payload: dict, text: str) -> None:
    """The results: --json prints strict JSON (a non-finite number becomes null, with a warning:
    `Infinity` is not JSON), else the table."""
    if args.json:
        try:
            text = json.dumps(payload, allow_nan=False)
        except ValueError:
            print("warning: some results are not finite numbers (infinite times?); they are "
                  "null in the JSON", file=sys.stderr)  # fmt: skip
            text = json.dumps(_finite(payload), allow_nan=False)
    print(text, flush=True)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def cmd_simulate(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import Arm, run_arm
    from plait.sgc.schemes import make_scheme

    check_args(args, n=1, jobs=1, mu=0, c0=0, c1=0, seed=0)
    check_outputs(args, "plot", "log", "save-trace")
    rules = check_rules(args.rules.split(","))
    params = params_of(args)
    arms = [Arm(scheme=args.scheme, params=params, rules=r) for r in rules]
    tr = load_trace(  # make_scheme validates the parameters for the trace's n
        args,
        lambda n: max(args.jobs + 8, make_scheme(args.scheme, n, args.jobs, **params).n_rounds),
    )
    if args.save_trace:
        tr.save(args.save_trace)
    out: dict = {}
    lines: list[str] = []
    # a fresh log per run (emptied, never unlinked), appended arm by arm (an interrupted run
    # keeps its arms)
    log = JsonlAppender(args.log, fresh=True) if args.log else None
    try:
        for arm in tqdm(arms, desc="simulate", disable=args.json, file=sys.stderr):
            recs: list | None = [] if log is not None else None
            r = run_arm(arm, tr, args.jobs, mu=args.mu, c0=args.c0, c1=args.c1, log=recs,
                        verify=args.verify_decode)  # fmt: skip
            for rec in recs or []:
                log.write(rec)  # type: ignore[union-attr]
            out[arm.label] = r
            chk = r["decode_check"]
            lines.append(
                f"{arm.label:44s} runtime {r['runtime']:9.1f} s  wait-outs {r['wait_outs']:4d}  "
                f"extended {r['extended']:4d}  load {r['load']:.5f}"
                + (f"  decode err {chk['worst_rel_error']:.1e}" if chk else "")
            )
    finally:
        if log is not None:
            log.close()
    done = {k: v.pop("done") for k, v in out.items()}
    emit(args, out, "\n".join(lines))
    if args.plot:
        from plait.sgc.plots import jobs_vs_time

        jobs_vs_time(done, args.plot, f"{args.trace} trace, n={tr.n}")
    return 0


def cmd_search(args) -> int:
    from tqdm import tqdm

    from plait.sgc.search import check_probe, grid, oracle_best, probe_then_switch

    check_args(args, n=2, jobs=1, mu=0, c0=0, c1=0, seed=0, probe=1, max_delay=1)
    check_probe(args.probe, args.jobs, args.max_delay)
    check_outputs(args, "plot")
    check_rules([args.rules])
    tr = load_trace(args, lambda n: args.jobs + args.max_delay)
    bar = tqdm(total=len(grid(tr.n, args.max_delay)) * (1 + args.oracle), desc="search",
               disable=args.json, file=sys.stderr)  # fmt: skip
    kw = dict(mu=args.mu, c0=args.c0, c1=args.c1)
    res = probe_then_switch(tr, probe=args.probe, n_jobs=args.jobs, max_delay=args.max_delay,
                            rules=args.rules, progress=bar.update, **kw)  # fmt: skip
    out = dict(probe_then_switch={k: v for k, v in res.items() if k != "probe_scores"})
    if args.oracle:
        o = oracle_best(tr, n_jobs=args.jobs, max_delay=args.max_delay, rules=args.rules,
                        progress=bar.update, **kw)  # fmt: skip
        out["oracle_best"] = dict(choice=o["choice"], total=o["total"])
    bar.close()
    emit(args, out, json.dumps(out, indent=1))
    if args.plot:
        from plait.sgc.plots import runtime_vs_load
        from plait.sgc.schemes import make_scheme

        scores = res["probe_scores"]  # keyed "name{sorted params}", as search._best writes them
        pts = [(name, float(make_scheme(name, tr.n, 1, **p).load()), scores[key])
               for name, p in grid(tr.n, args.max_delay)
               if (key := f"{name}{dict(sorted(p.items()))}") in scores]  # fmt: skip
        runtime_vs_load(pts, args.plot, f"probe of {args.probe} rounds")
    return 0


def cmd_train(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import RULES
    from plait.sgc.schemes import make_scheme
    from plait.sgc.traces import gilbert_elliott_trace

    check_args(args, n=1, jobs=1, mu=0, c0=0, c1=0, seed=0, models=1, unit=1, lr_min=0,
               lr_max=0)  # fmt: skip
    if not 0 < args.scale < float("inf") or not 0 < args.cpus_per_actor < float("inf"):
        raise UsageError(f"--scale and --cpus-per-actor must be > 0, got {args.scale}, "
                         f"{args.cpus_per_actor}")  # fmt: skip
    check_outputs(args, "plot")
    check_rules([args.rules])
    require_extra("sklearn", "ml", "training on digits")
    if args.backend == "ray":
        require_extra("ray", "ray", "--backend ray")
    from plait.sgc.training import TrainConfig, check_round_robin, reference_train, train

    params = params_of(args)
    sc = make_scheme(args.scheme, args.n, args.jobs, unit=args.unit, **params)
    check_round_robin(args.models, sc.T)
    check_cells(args.n, sc.n_rounds + 1)
    cfg = TrainConfig(models=args.models, seed=args.seed, lr_min=args.lr_min, lr_max=args.lr_max)
    tr = gilbert_elliott_trace(args.n, sc.n_rounds + 1, seed=args.seed, jitter=0.02 * args.scale,
                               slow=(0.3 * args.scale, 1.0 * args.scale), tail_prob=0.0)  # fmt: skip
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
    res, work, curve = train(sc, factory, cfg, RULES[args.rules](args.mu),
                             progress=lambda r: bar.update())  # fmt: skip
    bar.close()
    ref = reference_train(cfg, sc.job_size, args.jobs)
    acc = [work.evaluate(m)[1] for m in range(cfg.models)]
    ref_acc = [ref.evaluate(m)[1] for m in range(cfg.models)]
    out = dict(scheme=sc.name, params=params, backend=args.backend, total_time=res.total_time,
               accuracy=acc, uncoded_reference_accuracy=ref_acc, equal_to_reference=acc == ref_acc,
               wait_outs=res.wait_outs, extended=res.extended)  # fmt: skip
    emit(args, out, json.dumps(out, indent=1))
    if args.plot:
        from plait.sgc.plots import loss_vs_time

        loss_vs_time({sc.name: curve}, args.plot, f"{sc.name} on {args.backend}")
    return 0


def cmd_bench(args) -> int:
    from tqdm import tqdm

    from plait.sgc.bench import Arm, format_table, paired_comparison, summarize

    check_args(args, n=28, jobs=1, mu=0, seeds=1)
    check_cells(args.n, args.jobs + 4)
    check_outputs(args, "plot")
    arms = [Arm(scheme="ignore"), Arm(scheme="uncoded", rules="paper")]
    for name in ("gc", "sr-sgc", "m-sgc"):
        arms += [
            Arm(scheme=name, params=SCHEME_DEFAULTS[name], rules=r) for r in ("paper", "plait")
        ]
    bar = tqdm(total=len(arms) * args.seeds, desc="bench", disable=args.json, file=sys.stderr)
    res = paired_comparison(arms, kind=args.trace, n=args.n, n_jobs=args.jobs, rounds=args.jobs + 4,
                            seeds=list(range(args.seeds)), mu=args.mu, progress=bar.update)  # fmt: skip
    bar.close()
    base = Arm(scheme="gc", params=SCHEME_DEFAULTS["gc"], rules="paper").label
    table = summarize(res, base)
    emit(args, table, format_table(table, base))
    if args.plot:
        from plait.sgc.plots import jobs_vs_time

        jobs_vs_time({k: v[0]["done"] for k, v in res.items()}, args.plot, f"{args.trace} seed 0")
    return 0
