"""Parameter search arms (issue 5, item 7): probe-then-switch and oracle-best, virtual clock.

For each trace kind (GE, i.i.d.) and seed: probe K = 80 uncoded rounds, simulate the grid on
the probe (plait's master), switch to the fastest for the remaining jobs; the oracle picks the
best grid point with hindsight on the whole 496-job run (a reduced lambda grid, to bound time).
Baseline measured on the same trace: GC s = 15 under the paper's rules. Writes
benchmarks/results/sgc_search.{json,md}; JSON object on the last line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

from tqdm import tqdm

from plait.sgc.bench import Arm, make_trace, run_arm
from plait.sgc.search import LAMS, grid, oracle_best, probe_then_switch

ORACLE_LAMS = (3, 7, 15, 23, 27, 31, 47)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--jobs", type=int, default=496)
    ap.add_argument("--probe", type=int, default=80)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/sgc_search")
    args = ap.parse_args()
    total = 2 * args.seeds * (len(grid(args.n, 4, LAMS)) + len(grid(args.n, 3, ORACLE_LAMS)))
    bar = tqdm(total=total, desc="sgc search")
    rows = []
    for kind in ("ge", "iid"):
        for seed in range(args.seeds):
            tr = make_trace(kind, args.n, args.jobs + 4, seed)
            base = run_arm(Arm(scheme="gc", params=dict(s=15), rules="paper"), tr, args.jobs)[
                "runtime"
            ]
            pts = probe_then_switch(tr, probe=args.probe, n_jobs=args.jobs, progress=bar.update)
            orc = oracle_best(
                tr, n_jobs=args.jobs, max_delay=3, lams=ORACLE_LAMS, progress=bar.update
            )
            top = sorted(orc["scores"].items(), key=lambda kv: kv[1])[:8]
            rows.append(
                dict(
                    kind=kind,
                    seed=seed,
                    gc_paper=base,
                    probe_then_switch=pts["total"],
                    probe_choice=pts["choice"],
                    oracle=orc["total"],
                    oracle_choice=orc["choice"],
                    oracle_top=top,
                    pts_over_gc_paper=pts["total"] / base,
                    oracle_over_gc_paper=orc["total"] / base,
                )
            )
            tqdm.write(json.dumps({k: v for k, v in rows[-1].items() if k != "oracle_top"}))
    bar.close()
    report = dict(
        machine=f"{platform.node()} 2-core CPU, no GPU (shared; other work may run)",
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        settings=vars(args),
        rows=rows,
    )
    Path(args.out + ".json").write_text(json.dumps(report, indent=1))
    lines = [
        "| trace | seed | GC s=15 paper (s) | probe-then-switch (s) | choice | oracle-best (s) | choice |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['seed']} | {r['gc_paper']:.1f} | {r['probe_then_switch']:.1f} "
            f"({r['pts_over_gc_paper']:.3f}x) | {r['probe_choice']} | {r['oracle']:.1f} "
            f"({r['oracle_over_gc_paper']:.3f}x) | {r['oracle_choice']} |"
        )
    Path(args.out + ".md").write_text(
        f"# SGC parameter search ({report['date']})\n\n{report['machine']}\n\n"
        + "\n".join(lines)
        + "\n\nOracle top-8 per trace in the .json.\n"
    )
    print("\n".join(lines))
    print(json.dumps([{k: v for k, v in r.items() if k != "oracle_top"} for r in rows]))


if __name__ == "__main__":
    main()
