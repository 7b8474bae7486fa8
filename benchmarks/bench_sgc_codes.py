"""Conditioning of gradient codes under adversarial and random straggler sets (issue 15).

Codes (plait.sgc.codes.GradientCode kinds): ``crc`` (Tandon et al.'s cyclic repetition code over
all n workers, random orthonormal parity), ``dft`` (the real cyclic MDS code of Raviv, Tamo,
Tandon and Dimakis over all n workers; needs n - s odd) and ``hybrid`` (plait's: FRC groups plus
small blocks, the default where (s + 1) does not divide n). Straggler sets of size s: every
contiguous run (all n rotations; 32 evenly spaced ones for the one-block codes at n = 1024) and
random sets. Per set: the condition number of the decoding system, the amplification
max_p sum_i |a_i| |B_ip|, and the relative decode error of random float64 vectors (partial
gradients N(0, 1), 8 coordinates); "accepted" = the code's own status is "ok".

Prints a table and a JSON object as the last line; writes <out>.json and <out>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import numpy as np

from plait.outputs import atomic_write_text
from plait.sgc.codes import GradientCode

S_SPREAD = {
    16: (1, 2, 3, 4),
    64: (2, 5, 12, 13, 16),
    256: (2, 5, 12, 13, 23, 27, 32, 40, 50, 64),
    1024: (2, 12, 40, 64, 100, 128, 200, 256),
}


def straggler_sets(n: int, s: int, rotations: int, n_random: int, seed: int) -> list[np.ndarray]:
    """Survivor masks: contiguous runs of s stragglers at ``rotations`` starts, then random."""
    out = []
    for start in np.linspace(0, n, rotations, endpoint=False).astype(int):
        m = np.ones(n, dtype=bool)
        m[(start + np.arange(s)) % n] = False
        out.append(m)
    rng = np.random.default_rng([n, s, seed])
    for _ in range(n_random):
        m = np.ones(n, dtype=bool)
        m[rng.choice(n, s, replace=False)] = False
        out.append(m)
    return out


def measure(code: GradientCode, mask: np.ndarray, g: np.ndarray) -> dict:
    """Decode with the blocks' own coefficients even where the code would refuse the set."""
    a = np.zeros(code.n)
    for o, c in code.blocks:
        a[o : o + c.m] = c.solve(mask[o : o + c.m]).a
    truth = g.sum(axis=0)
    err = float(np.linalg.norm(a @ (code.B @ g) - truth) / np.linalg.norm(truth))
    return dict(
        ok=code.status(mask) == "ok",
        cond=code.condition(mask),
        amp=code.amplification(a),
        err=err if np.isfinite(err) else float("inf"),
    )


def row(n: int, s: int, kind: str, args) -> dict | None:
    try:
        t0 = time.perf_counter()
        code = GradientCode(n=n, s=s, kind=kind)
        build = time.perf_counter() - t0
    except ValueError:  # dft needs n - s odd
        return None
    rot = min(n, args.max_rotations) if len(code.blocks) == 1 and n > 256 else n
    sets = straggler_sets(n, s, rot, args.random, args.seed)
    rng = np.random.default_rng(args.seed)
    ms = [measure(code, m, rng.standard_normal((n, 8))) for m in sets]
    acc = [x for x in ms if x["ok"]]
    contig = ms[:rot]
    return dict(
        n=n, s=s, kind=code.kind, blocks=[(b["m"], b["k"], b["design"]) for b in code.layout()][:1],
        n_blocks=len(code.blocks), build_s=build, sets=len(ms), accepted=len(acc),
        max_cond=max(x["cond"] for x in ms), max_amp=max(x["amp"] for x in ms),
        max_amp_contig=max(x["amp"] for x in contig), max_err_all=max(x["err"] for x in ms),
        max_err_accepted=max((x["err"] for x in acc), default=0.0),
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ns", default="16,64,256,1024")
    ap.add_argument("--kinds", default="hybrid,crc,dft")
    ap.add_argument("--random", type=int, default=64, help="random straggler sets per (n, s)")
    ap.add_argument("--max-rotations", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/sgc_codes")
    args = ap.parse_args()
    rows = []
    head = (f"{'n':>5s} {'s':>4s} {'kind':7s} {'first block (m,k,design)':26s} {'acc':>9s} "
            f"{'max cond':>9s} {'max amp':>9s} {'amp contig':>10s} {'err all':>8s} {'err acc':>8s}")  # fmt: skip
    print(head, flush=True)
    for n in (int(x) for x in args.ns.split(",")):
        for s in S_SPREAD[n]:
            for kind in args.kinds.split(","):
                r = row(n, s, "auto" if kind == "hybrid" else kind, args)
                if r is None:
                    continue
                rows.append(r)
                print(f"{n:5d} {s:4d} {r['kind']:7s} {str(r['blocks'][0]):26s} "
                      f"{r['accepted']:4d}/{r['sets']:<4d} {r['max_cond']:9.2e} {r['max_amp']:9.2e} "
                      f"{r['max_amp_contig']:10.2e} {r['max_err_all']:8.1e} "
                      f"{r['max_err_accepted']:8.1e}", flush=True)  # fmt: skip
    hyb = [r for r in rows if r["kind"] in ("frc", "hybrid")]
    summary = dict(
        hybrid_max_err_accepted=max(r["max_err_accepted"] for r in hyb),
        hybrid_all_accepted=all(r["accepted"] == r["sets"] for r in hyb),
        hybrid_max_amp=max(r["max_amp"] for r in hyb),
        crc_max_cond=max((r["max_cond"] for r in rows if r["kind"] == "crc"), default=None),
    )
    report = dict(machine=f"{platform.node()} {platform.machine()} 2-core CPU (shared)",
                  numpy=np.__version__, settings=vars(args), summary=summary, rows=rows,
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))  # fmt: skip
    atomic_write_text(args.out + ".json", json.dumps(report, indent=1, default=float))
    md = ["# Gradient-code conditioning", "", report["date"], "", "| n | s | kind | first block | "
          "accepted | max cond | max amp | amp contiguous | err all | err accepted |", "|---" * 10 + "|"]  # fmt: skip
    for r in rows:
        md.append(f"| {r['n']} | {r['s']} | {r['kind']} | {r['blocks'][0]} | {r['accepted']}/{r['sets']} | "
                  f"{r['max_cond']:.2e} | {r['max_amp']:.2e} | {r['max_amp_contig']:.2e} | "
                  f"{r['max_err_all']:.1e} | {r['max_err_accepted']:.1e} |")  # fmt: skip
    atomic_write_text(args.out + ".md", "\n".join(md) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
