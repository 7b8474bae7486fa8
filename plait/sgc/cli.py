"""`plait sgc simulate | search | train | bench`: gradient coding from the command line.

simulate: one scheme on a trace (virtual clock), paper vs plait rules, every job decoded with
random vectors (--verify-decode); search: probe-then-switch and oracle-best over the parameter
grid; train: round-robin training on digits (virtual or Ray); bench: the paired comparison on a
few seeds. All take --json (one JSON object on stdout) and --plot PATH. The commands are in
plait/sgc/commands.py; no torch import unless training.
"""

from __future__ import annotations

import argparse

from plait.arguments import HelpFormatter

EXAMPLES = {
    "sgc": """examples:
  plait sgc simulate --scheme m-sgc --B 1 --W 2 --lam 27 --trace ge --plot jobs.png
  plait sgc search --n 256 --jobs 496 --probe 80 --oracle --json
  plait sgc train --scheme sr-sgc --B 1 --W 2 --lam 2 --backend ray
  plait sgc bench --trace iid --seeds 3""",
    "simulate": """examples:
  plait sgc simulate --scheme m-sgc --B 1 --W 2 --lam 27 --n 256 --jobs 496 --trace ge
  plait sgc simulate --scheme gc --s 15 --trace iid --rules paper,earliest-model,plait --json
  plait sgc simulate --scheme sr-sgc --B 2 --W 3 --lam 23 --save-trace t.npz --log rounds.jsonl
  plait sgc simulate --scheme gc --s 13 --trace t.npz --plot jobs.png   # n comes from the file""",
    "search": """examples:
  plait sgc search --n 256 --jobs 496 --probe 80 --max-delay 4 --json
  plait sgc search --trace iid --oracle --plot runtime_vs_load.png""",
    "train": """examples:
  plait sgc train --scheme m-sgc --B 1 --W 2 --lam 3 --n 8 --jobs 120 --models 4
  plait sgc train --scheme sr-sgc --B 1 --W 2 --lam 2 --backend ray --plot loss.png""",
    "bench": """examples:
  plait sgc bench --trace ge --seeds 3 --json
  plait sgc bench --trace iid --n 64 --jobs 100 --plot jobs.png""",
}


_PER_SCHEME = "%(default).0s"  # renders as nothing: the help text gives the default itself


def _common(p: argparse.ArgumentParser, *, n: int | None = 256, jobs: int = 496) -> None:
    n_help = "workers" if n else "workers (default: 256, or the trace file's)" + _PER_SCHEME
    p.add_argument("--n", type=int, default=n, help=n_help)
    p.add_argument("--jobs", type=int, default=jobs, help="gradient jobs")
    p.add_argument("--mu", type=float, default=1.0, help="cut at (1 + mu) x fastest")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _scheme(p: argparse.ArgumentParser, s: int | None = None, lam: int | None = None) -> None:
    """Scheme flags; a None default means the scheme's own (GC s=15, SR-SGC (2,3,23), M-SGC
    (1,2,27))."""
    p.add_argument("--scheme", default="m-sgc", choices=["uncoded", "ignore", "gc", "sr-sgc", "m-sgc"],
                   help="gradient coding scheme")  # fmt: skip

    def per(text: str) -> str:
        return f" (default: per scheme, {text})" + _PER_SCHEME

    p.add_argument("--s", type=int, default=s,
                   help="GC: stragglers tolerated per round" + ("" if s else per("15")))  # fmt: skip
    p.add_argument("--B", type=int, default=None, help="SGC burst length" + per("SR 2, M 1"))
    p.add_argument("--W", type=int, default=None, help="SGC window" + per("SR 3, M 2"))
    p.add_argument("--lam", type=int, default=lam,
                   help="SGC stragglers per window" + ("" if lam else per("SR 23, M 27")))  # fmt: skip


def _trace(p: argparse.ArgumentParser, *, c0: float = 0.56, c1: float = 2.2013) -> None:
    p.add_argument("--trace", default="ge", help="ge | iid | path to a .npz trace")
    p.add_argument("--seed", type=int, default=0, help="seed of a generated trace")
    p.add_argument("--c0", type=float, default=c0, help="fixed seconds per round (virtual clock)")
    p.add_argument("--c1", type=float, default=c1, help="seconds per unit of normalized load")


def _parser(sub, name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, epilog=EXAMPLES[name],
                          formatter_class=HelpFormatter)  # fmt: skip


def _run(name: str):
    def run(args) -> int:
        from plait.sgc import commands

        return getattr(commands, f"cmd_{name}")(args)

    return run


def register(subparsers) -> None:
    sgc = subparsers.add_parser(
        "sgc",
        help="sequential gradient coding (virtual clock and Ray)",
        description="Sequential gradient coding: GC, SR-SGC and M-SGC on a virtual clock or Ray.",
        epilog=EXAMPLES["sgc"],
        formatter_class=HelpFormatter,
    )
    sub = sgc.add_subparsers(dest="sgc_command", metavar="SGC_COMMAND")
    sgc.set_defaults(func=lambda a: (sgc.print_help(), 0)[1])

    p = _parser(sub, "simulate", "one scheme on a trace, paper vs plait rules")
    _scheme(p)
    _common(p, n=None)
    _trace(p)
    p.add_argument(
        "--rules", default="paper,plait", help="comma list of paper | earliest-model | plait"
    )
    p.add_argument("--verify-decode", action=argparse.BooleanOptionalAction, default=True,
                   help="decode every job with random vectors; report the worst relative error")  # fmt: skip
    p.add_argument("--save-trace", default=None, help="write the trace used to this .npz")
    p.add_argument("--log", default=None, help="per-round log (JSON lines; code conditioning last)")
    p.add_argument("--plot", default=None, help="jobs completed vs time (.png)")
    p.set_defaults(func=_run("simulate"))

    p = _parser(sub, "search", "probe-then-switch parameter search (and oracle-best)")
    _common(p, n=None)
    _trace(p)
    p.add_argument("--probe", type=int, default=80, help="uncoded probe rounds")
    p.add_argument("--max-delay", type=int, default=4, help="largest W - 1 + B searched")
    p.add_argument("--rules", default="plait", help="paper | earliest-model | plait")
    p.add_argument("--oracle", action="store_true", help="also the oracle-best arm (hindsight)")
    p.add_argument("--plot", default=None, help="probe runtime vs load (.png)")
    p.set_defaults(func=_run("search"))

    p = _parser(sub, "train", "round-robin training of M models on digits")
    _scheme(p, s=1, lam=3)  # small-n defaults (the paper's lam=27 needs n > 27)
    _common(p, n=8, jobs=120)
    p.add_argument("--models", type=int, default=4, help="M >= T + 1")
    p.add_argument("--unit", type=int, default=4, help="samples per smallest piece")
    p.add_argument("--backend", choices=["virtual", "ray"], default="virtual")
    p.add_argument("--address", default=None, help="ray.init(address=...) for a cluster")
    p.add_argument("--cpus-per-actor", type=float, default=0.1, help="Ray CPUs per worker actor")
    p.add_argument("--scale", type=float, default=0.2, help="seconds scale of injected delays")
    p.add_argument("--rules", default="plait", help="paper | earliest-model | plait")
    p.add_argument("--seed", type=int, default=0, help="seed of models, batches and delays")
    p.add_argument("--lr-min", type=float, default=0.5, help="smallest model learning rate")
    p.add_argument("--lr-max", type=float, default=1.0, help="largest model learning rate")
    p.add_argument("--c0", type=float, default=0.05, help="fixed seconds per round (virtual)")
    p.add_argument("--c1", type=float, default=0.5, help="seconds per unit of load (virtual)")
    p.add_argument("--plot", default=None, help="loss vs time per model (.png)")
    p.set_defaults(func=_run("train"))

    p = _parser(sub, "bench", "paired comparison on a few seeds (virtual clock)")
    _common(p)
    p.add_argument("--trace", default="ge", choices=["ge", "iid"], help="generated trace kind")
    p.add_argument("--seeds", type=int, default=3, help="traces (seeds 0 .. SEEDS-1)")
    p.add_argument("--plot", default=None, help="jobs completed vs time for seed 0 (.png)")
    p.set_defaults(func=_run("bench"))
