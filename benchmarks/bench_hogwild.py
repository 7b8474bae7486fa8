"""Hogwild! decode throughput: tokens/s for W = 1, 2, 4 workers at a given shared context.

The full engine runs (combined layout, instant visibility, paragraph rule, sampling, transcript
bookkeeping): the prompt is padded to the context length, then `--passes` generation passes are
timed one by one (on_pass hook) and the median pass time gives tokens/s = W / median (the steady
decode speed); `tokens_per_s_mean` = W / mean pass time also charges the passes that feed step
headers (up to 1 + 7 tokens per worker), which are several times slower at W = 4. W = 1 is
the single-worker baseline measured in the same run (the same path as plain decoding of one
sequence, which `tests/hogwild/test_equivalence.py` shows is exact). `--profile` adds a torch
profiler breakdown (attention vs the rest) of a few passes per W.

    flock /tmp/plait-bench.lock python benchmarks/bench_hogwild.py --contexts 1024 4096
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save, table  # noqa: E402

from plait.hogwild.config import HogwildConfig  # noqa: E402
from plait.hogwild.problem import HogwildProblem  # noqa: E402
from plait.hogwild.solve import solve  # noqa: E402

FILLER = "The quick brown fox counts apples in the orchard and writes the numbers down. "


def padded_problem(model, tokenizer, cfg: HogwildConfig, context: int) -> str:  # noqa: ANN001
    """A problem whose prompt is about `context` tokens long."""
    probe = HogwildProblem(model, tokenizer, cfg, "Q")
    base = len(probe.encode(probe.prompt_text))
    per = len(probe.encode(FILLER))
    text = FILLER * max(0, (context - base) // per)
    return text + "What is 2 + 3?"


def measure(model, tokenizer, workers: int, context: int, passes: int, profile: bool) -> dict:  # noqa: ANN001
    cfg = HogwildConfig(
        workers=workers,
        budgets=(passes + 2,),
        finisher=False,
        stop_on_answer=False,
        interjection_every=0,
    )
    times: list[float] = []
    last = [0.0]

    def on_pass(problem, index, feeds, streams, logits) -> None:  # noqa: ANN001
        now = time.perf_counter()
        if index > 2:  # pass 1 feeds the seeds; pass 2 may include first-step effects
            times.append(now - last[0])
        last[0] = now

    problem = padded_problem(model, tokenizer, cfg, context)
    unit = HogwildProblem(model, tokenizer, cfg, problem)
    ctx_tokens = len(unit.encode(unit.prompt_text))
    t0 = time.perf_counter()
    prof_rows = None
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as tprofile

        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            solve(model, tokenizer, problem, cfg, on_pass=on_pass)
        prof_rows = _breakdown(prof)
    else:
        solve(model, tokenizer, problem, cfg, on_pass=on_pass)
    med = statistics.median(times)
    return {
        "workers": workers,
        "context": ctx_tokens,
        "passes": len(times),
        "ms_per_pass": 1000 * med,
        "tokens_per_s": workers / med,
        "ms_per_pass_mean": 1000 * statistics.fmean(times),
        "total_s": time.perf_counter() - t0,
        "profile": prof_rows,
    }


def _breakdown(prof) -> dict:  # noqa: ANN001
    """Self CPU time grouped into attention kernels, linear layers and the rest (ms, whole run)."""
    groups = {"attention": 0.0, "linear": 0.0, "other": 0.0}
    for e in prof.key_averages():
        t = e.self_cpu_time_total / 1000
        name = e.key
        if "attention" in name or "softmax" in name or "bmm" in name or "baddbmm" in name:
            groups["attention"] += t
        elif name in ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul"):
            groups["linear"] += t
        else:
            groups["other"] += t
    return groups


def summarise(per_w: dict, d: str, workers: list[int], base_dtype: str) -> list[dict]:
    """One row per W for dtype `d`: medians over rounds, speedups vs W=1, paired ratios."""
    rows = []
    base = base_mean = None
    for w in workers:
        runs = per_w[(d, w)]
        r = dict(runs[0], dtype=d)
        r["ms_per_pass_rounds"] = [x["ms_per_pass"] for x in runs]
        r["ms_per_pass"] = statistics.median(r["ms_per_pass_rounds"])
        r["tokens_per_s"] = w / (r["ms_per_pass"] / 1000)
        r["ms_per_pass_mean"] = statistics.median(x["ms_per_pass_mean"] for x in runs)
        r["tokens_per_s_mean"] = w / (r["ms_per_pass_mean"] / 1000)
        if w == 1:
            base, base_mean = r["tokens_per_s"], r["tokens_per_s_mean"]
        r["speedup_vs_w1"] = r["tokens_per_s"] / base if base else None
        r["speedup_mean_vs_w1"] = r["tokens_per_s_mean"] / base_mean if base else None
        if (d, 1) in per_w:  # paired: W=1 and W=w of the same round (adjacent runs) compared
            r["speedup_paired"] = statistics.median(
                w * a["ms_per_pass"] / b["ms_per_pass"] for a, b in zip(per_w[(d, 1)], runs)
            )
        # tokens/s vs the baseline dtype, paired per round (> 1: this dtype is faster)
        r["vs_baseline_dtype"] = statistics.median(
            b["ms_per_pass"] / a["ms_per_pass"] for a, b in zip(runs, per_w[(base_dtype, w)])
        )
        rows.append(r)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--dtype", nargs="+", default=["bf16"],
                    help="weight dtypes, interleaved per round (e.g. gguf bf16); ratios vs the last")  # fmt: skip
    ap.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--passes", type=int, default=24)
    ap.add_argument(
        "--rounds", type=int, default=3, help="interleaved repeats of every W (median kept)"
    )
    ap.add_argument("--profile", action="store_true")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared, oversubscribed 2-core machine every "
        "parallel op with 2 threads can stall tens of ms waiting for the second core)",
    )
    ap.add_argument("--out", default="hogwild_cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from plait.runtime.loading.loader import load_model

    lms = {d: load_model(args.model, dtype=d) for d in args.dtype}
    rows = []
    for ctx in args.contexts:
        # NOTE: W values (and dtypes) are measured in interleaved rounds (1, 2, 4, 1, 2, 4, ...)
        # and the median over rounds is kept, so slow drifts of a shared machine hit all alike.
        per_w: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for w in args.workers:
                for d, lm in lms.items():
                    r = measure(lm.model, lm.tokenizer, w, ctx, args.passes, args.profile)
                    per_w.setdefault((d, w), []).append(r)
                    print(f"ctx {r['context']} {d} W={w}: {r['ms_per_pass']:.1f} ms/pass",
                          file=sys.stderr)  # fmt: skip
        for d in args.dtype:
            rows += summarise(per_w, d, args.workers, args.dtype[-1])
    print(
        table(
            rows,
            [
                "dtype",
                "context",
                "workers",
                "ms_per_pass",
                "tokens_per_s",
                "speedup_vs_w1",
                "tokens_per_s_mean",
                "speedup_mean_vs_w1",
                "speedup_paired",
                "vs_baseline_dtype",
                "passes",
            ],
        )
    )
    payload = {
        "benchmark": "hogwild_decode",
        "model": args.model,
        "dtype": args.dtype,
        "machine": machine(),
        "threads": args.threads,
        "passes_timed": args.passes,
        "rounds": args.rounds,
        "goal": "W=2 >= 1.9x and W=4 >= 3.5x the W=1 tokens/s",
        "metrics": "tokens_per_s = W / median pass; tokens_per_s_mean = W / mean pass (header "
        "passes included); speedup_paired = median over rounds of the ratio to that round's W=1 run",
        "rows": rows,
    }
    save(args.out, payload)
    print(json.dumps(payload))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
