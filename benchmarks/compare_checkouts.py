"""Run one benchmark script in two checkouts (before / after a change) in interleaved rounds.

Each round runs the script once in each checkout, in alternating order (A B, B A, ...), each
process importing its own checkout's `plait` (PYTHONPATH); the script's JSON last line gives its
rows. For every row (matched on --keys) and metric (a time: lower is better) the table shows the
median of each side over rounds and the median over rounds of the paired ratio after/before
(> 1: the change is slower). A metric renamed by the change is given as before_name=after_name.
A checkout needs its kernels built once (~80 s; the first round pays it if not).

    git worktree add --detach /tmp/plait-before <commit before the change>
    flock /tmp/plait-bench.lock python benchmarks/compare_checkouts.py --before /tmp/plait-before \
        --rounds 3 --keys shape threads context workers \
        --metrics fused_us=step_kernel_us per_read_us=segment_kernel_us torch_us \
        --out step_attention_before_after -- bench_step_attention.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save, table  # noqa: E402

HERE = Path(__file__).resolve().parents[1]


def run_once(checkout: Path, script: str, args: list[str], scratch: Path) -> dict:
    """Run benchmarks/<script> in `checkout` with its own plait; return its JSON payload."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, str(checkout / "benchmarks" / script), *args, "--out", str(scratch)]
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{script} failed in {checkout}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(runs: dict[str, list[dict]], keys: list[str], metrics: list[tuple[str, str]]) -> list:
    """One row per (key, metric): medians of both sides and the median paired ratio."""
    out = []
    rounds = list(zip(runs["before"], runs["after"]))
    for row in runs["after"][0]["rows"]:
        key = tuple(row[k] for k in keys)
        for old, new in metrics:
            pairs = []
            for before, after in rounds:
                b = next(r for r in before["rows"] if tuple(r[k] for k in keys) == key)
                a = next(r for r in after["rows"] if tuple(r[k] for k in keys) == key)
                pairs.append((b[old], a[new]))
            out.append(
                {
                    **dict(zip(keys, key)),
                    "metric": new,
                    "before": statistics.median(b for b, _ in pairs),
                    "after": statistics.median(a for _, a in pairs),
                    "ratio": statistics.median(a / b for b, a in pairs),
                    "ratios": [round(a / b, 4) for b, a in pairs],
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    ap.add_argument("--after", type=Path, default=HERE, help="checkout of the new code")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keys", nargs="+", required=True, help="row fields that identify a row")
    ap.add_argument("--metrics", nargs="+", required=True, help="name or before_name=after_name")
    ap.add_argument("--out", required=True, help="result name under benchmarks/results/")
    ap.add_argument("script", help="benchmark script in benchmarks/, then its arguments")
    ap.add_argument("script_args", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    metrics = [tuple(m.split("=", 1)) if "=" in m else (m, m) for m in args.metrics]
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                checkout = args.before if side == "before" else args.after
                scratch = Path(tmp) / f"{side}_{r}"
                runs[side].append(
                    run_once(checkout.resolve(), args.script, args.script_args, scratch)
                )
                print(f"round {r + 1}/{args.rounds}: {side} done", file=sys.stderr)
    rows = compare(runs, args.keys, metrics)  # type: ignore[arg-type]
    print(table(rows, [*args.keys, "metric", "before", "after", "ratio"]))
    payload = {
        "benchmark": f"before_after:{args.script}",
        "machine": machine(),
        "before": {"checkout": str(args.before), "git": runs["before"][0]["machine"].get("git")},
        "after": {"checkout": str(args.after), "git": runs["after"][0]["machine"].get("git")},
        "script_args": args.script_args,
        "rounds": args.rounds,
        "metrics": "ratio = median over rounds of after/before (time: > 1 is slower)",
        "rows": rows,
        "raw": runs,
    }
    save(args.out, payload)
    print(json.dumps({k: v for k, v in payload.items() if k != "raw"}))


if __name__ == "__main__":
    main()
