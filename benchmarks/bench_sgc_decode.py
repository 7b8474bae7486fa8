"""Every job decodes, over the paper's grid at n = 256 (issue 15), and the virtual clock's speed.

Part 1 (grid): GC s = 1..64, SR-SGC and M-SGC with (B, W) in {(1,2), (1,3), (1,4), (2,3)}
(W - 1 + B <= 4) and lambda = 1..64, on a Gilbert-Elliott (bursty) and an i.i.d. trace of
256 workers x 500 rounds (496 jobs), under the paper's rules and plait's master. Every job is
decoded with random float64 vectors as it decodes (plait.sgc.verify.DecodeCheck). A job fails
when its decoding raises or its relative error exceeds 1e-9. Results are appended per run to
<out>_grid.jsonl (a rerun resumes).

Part 2 (timing, with --baseline-src DIR, a copy of an earlier plait tree, e.g. made with
`git archive <rev> plait | tar -x -C DIR`): the paper's parameter sets under both rule sets,
runtime only, timed in fresh processes, baseline and current interleaved per repetition.

Prints a table and a JSON object as the last line; writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from plait.outputs import JsonlAppender, atomic_write_text, read_jsonl
from plait.sgc.bench import Arm, make_trace, run_arm

PAIRS = ((1, 2), (1, 3), (1, 4), (2, 3))  # (B, W) with W - 1 + B <= 4
TIMED = [("gc", dict(s=15)), ("sr-sgc", dict(B=2, W=3, lam=23)), ("m-sgc", dict(B=1, W=2, lam=27))]
TOL = 1e-9


def grid(lams: range) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = [("gc", dict(s=s)) for s in lams]
    for name in ("sr-sgc", "m-sgc"):
        for B, W in PAIRS:
            if name == "sr-sgc" and (W - 1) % B:
                continue
            out += [(name, dict(B=B, W=W, lam=lam)) for lam in lams]
    return out


def run_grid(args) -> list[dict]:
    path = Path(args.out + "_grid.jsonl")
    done = {(r["kind"], r["arm"]) for r in read_jsonl(path)}
    todo = [(k, Arm(scheme=nm, params=p, rules=r)) for k in args.kinds.split(",")
            for nm, p in grid(range(1, args.max_lam + 1)) for r in args.rules.split(",")]  # fmt: skip
    traces = {k: make_trace(k, args.n, args.rounds, args.seed) for k in args.kinds.split(",")}
    with JsonlAppender(path) as log:
        for i, (kind, arm) in enumerate(todo):
            if (kind, arm.label) in done:
                continue
            t0 = time.perf_counter()
            r = run_arm(arm, traces[kind], args.jobs, verify=True)
            chk = r["decode_check"]
            rec = dict(kind=kind, arm=arm.label, runtime=r["runtime"], wait_outs=r["wait_outs"],
                       extended=r["extended"], numeric_waits=r["numeric_waits"], jobs=chk["jobs"],
                       failed=chk["failed"], worst=chk["worst_rel_error"],
                       seconds=time.perf_counter() - t0)  # fmt: skip
            log.write(rec)
            print(f"[{i + 1}/{len(todo)}] {kind} {arm.label}: worst {rec['worst']:.1e} "
                  f"failed {rec['failed']} numeric waits {rec['numeric_waits']} "
                  f"{rec['seconds']:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
    return read_jsonl(path)


def time_one(spec: str) -> None:
    """Child process: run one arm (runtime only) and print its wall time."""
    name, params, rules, n, jobs, rounds = json.loads(spec)
    tr = make_trace("ge", n, rounds, 0)
    t0 = time.perf_counter()
    r = run_arm(Arm(scheme=name, params=params, rules=rules), tr, jobs)
    print(json.dumps(dict(seconds=time.perf_counter() - t0, runtime=r["runtime"])))


def run_timing(args) -> dict:
    out: dict = {}
    here = str(Path(__file__).resolve().parents[1])
    for rep in range(args.timing_reps):
        for name, params in TIMED:
            for rules in ("paper", "plait"):
                label = Arm(scheme=name, params=params, rules=rules).label
                spec = json.dumps([name, params, rules, args.n, args.jobs, args.rounds])
                for side, src in (("baseline", args.baseline_src), ("current", here))[
                    :: 1 - 2 * (rep % 2)
                ]:
                    env = dict(os.environ, PYTHONPATH=src)
                    res = subprocess.run([sys.executable, __file__, "--time-one", spec], env=env,
                                         capture_output=True, text=True, check=True, cwd="/tmp")  # fmt: skip
                    rec = json.loads(res.stdout.strip().splitlines()[-1])
                    out.setdefault(label, {}).setdefault(side, []).append(rec)
    return out


def summarize(recs: list[dict], timing: dict, jobs: int) -> tuple[dict, list[str]]:
    bad = [r for r in recs if r["failed"] or r["worst"] > TOL or r["jobs"] != jobs]
    by = {}
    for key in ("kind", "rules"):
        for r in recs:
            k = r[key] if key == "kind" else r["arm"].rsplit("/", 1)[1]
            d = by.setdefault(f"{key}={k}", dict(runs=0, worst=0.0, numeric_waits=0))
            d["runs"] += 1
            d["worst"] = max(d["worst"], r["worst"])
            d["numeric_waits"] += r["numeric_waits"]
    summary = dict(runs=len(recs), failing_runs=len(bad), undecodable_jobs=sum(r["failed"] for r in recs),
                   worst_rel_error=max((r["worst"] for r in recs), default=0.0),
                   runs_with_numeric_waits=sum(r["numeric_waits"] > 0 for r in recs),
                   by=by, failing=[f"{r['kind']} {r['arm']}" for r in bad][:20])  # fmt: skip
    lines = [f"grid: {summary['runs']} runs, {summary['undecodable_jobs']} undecodable jobs, "
             f"worst relative error {summary['worst_rel_error']:.2e}, "
             f"{summary['runs_with_numeric_waits']} runs with numeric waits"]  # fmt: skip
    lines += [f"  {k}: {v}" for k, v in by.items()]
    if timing:
        lines.append(
            f"{'arm':40s} {'baseline s':>11s} {'current s':>10s} {'ratio':>6s}  runtime equal"
        )
        for label, sides in timing.items():
            b = np.median([x["seconds"] for x in sides["baseline"]])
            c = np.median([x["seconds"] for x in sides["current"]])
            same = sides["baseline"][0]["runtime"] == sides["current"][0]["runtime"]
            lines.append(f"{label:40s} {b:11.2f} {c:10.2f} {c / b:6.2f}  {same}")
            summary.setdefault("timing", {})[label] = dict(baseline_median_s=b, current_median_s=c,
                                                           same_runtime=same)  # fmt: skip
    return summary, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=496)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-lam", type=int, default=64)
    ap.add_argument("--kinds", default="ge,iid")
    ap.add_argument("--rules", default="paper,plait")
    ap.add_argument("--baseline-src", default=None, help="plait tree to time against")
    ap.add_argument("--timing-reps", type=int, default=3)
    ap.add_argument("--skip-grid", action="store_true", help="only time; summarize the grid file")
    ap.add_argument("--time-one", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default="benchmarks/results/sgc_decode")
    args = ap.parse_args()
    if args.time_one:
        time_one(args.time_one)
        return
    recs = read_jsonl(args.out + "_grid.jsonl") if args.skip_grid else run_grid(args)
    timing = run_timing(args) if args.baseline_src else {}
    summary, lines = summarize(recs, timing, args.jobs)
    report = dict(machine=f"{platform.node()} {platform.machine()} 2-core CPU, no GPU (shared)",
                  python=platform.python_version(), numpy=np.__version__,
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  settings=vars(args), summary=summary, timing=timing)  # fmt: skip
    print("\n".join(lines))
    atomic_write_text(args.out + ".json", json.dumps(report, indent=1))
    atomic_write_text(args.out + ".md", "# SGC decode check and timing\n\n" + report["date"] + "\n\n```\n"
                      + "\n".join(lines) + "\n```\n")  # fmt: skip
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
