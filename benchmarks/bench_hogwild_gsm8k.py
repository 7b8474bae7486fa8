"""Hogwild! accuracy vs budget on GSM8K: W-worker Hogwild against the sequential baseline.

Each named variant (`VARIANTS` below: prompt, loop guard, temperature, layout, interjection
cadence) runs `plait.hogwild.evaluate` into `<out>/<variant>/` (resumable: records are appended
per batch, finished (method, problem) pairs are skipped; a manifest refuses a rerun with other
settings) and writes `benchmarks/results/hogwild_gsm8k_<variant>.json` (strict and lenient accuracy
with 95% Wilson intervals, duplicate-step rate, cuts, mean passes, answer rules) and
`..._records.jsonl` (every record). Accuracy runs take hours on 2 shared cores and are not timed
under the lock; `--speed` measures tokens/s of a variant (a few problems, few passes, under
`flock /tmp/plait-bench.lock`, 3 interleaved rounds against the `paper` baseline).

    python benchmarks/bench_hogwild_gsm8k.py --variant seq-answer_boxed --methods sequential
    python benchmarks/bench_hogwild_gsm8k.py --variant short-cut --methods hogwild-2 --limit 20
    python benchmarks/bench_hogwild_gsm8k.py --variant short-cut --summarize
    flock /tmp/plait-bench.lock python benchmarks/bench_hogwild_gsm8k.py --speed short-cut full
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, save  # noqa: E402

from plait.eval.curves import BudgetTable, read_records  # noqa: E402

OLD_SEQUENTIAL = {"prompt": "boxed", "suppress": ("#", "</think>"), "suppress_eos": True}
SEQ = {"prompt": "answer_is_after"}
CUT = {"loop_guard": "cut"}
PLAIN = {"prompt": "plain_after", "layout": "contiguous", "step_headers": False,
         "suppress": ("</think>",), "suppress_eos": False}  # fmt: skip
# name -> (HogwildConfig fields for hogwild-W, fields for sequential, temperature)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], float]] = {
    "old": ({}, OLD_SEQUENTIAL, 0.0),  # the setup before issue 14
    "seq-boxed": ({}, {"prompt": "boxed"}, 0.0),
    "seq-answer_is": ({}, {"prompt": "answer_is"}, 0.0),
    "seq-answer_boxed": ({}, SEQ, 0.0),
    "seq-answer_is_after": ({}, {"prompt": "answer_is_after"}, 0.0),
    "seq-worked": ({}, {"prompt": "worked"}, 0.0),
    "full": ({}, SEQ, 0.0),
    "full-cut": (CUT, SEQ, 0.0),
    "full-penalise": ({"loop_guard": "penalise"}, SEQ, 0.0),
    "short": ({"prompt": "short"}, SEQ, 0.0),
    "short-cut": ({"prompt": "short", **CUT}, SEQ, 0.0),
    "roles": ({"prompt": "roles"}, SEQ, 0.0),
    "roles-cut": ({"prompt": "roles", **CUT}, SEQ, 0.0),
    "full-tips-example-cut": ({"collaboration_tips": True, "few_shot": True, **CUT}, SEQ, 0.0),
    "full-cut-t0.5": (CUT, SEQ, 0.5),
    "full-t0.5": ({}, SEQ, 0.5),
    "full-cut-interleaved": ({"layout": "interleaved", **CUT}, SEQ, 0.0),
    "full-cut-contiguous": ({"layout": "contiguous", **CUT}, SEQ, 0.0),
    "full-cut-every128": ({"interjection_every": 128, **CUT}, SEQ, 0.0),
    "short_after-cut": ({"prompt": "short_after", **CUT}, SEQ, 0.0),
    "roles_after-cut": ({"prompt": "roles_after", **CUT}, SEQ, 0.0),
    "short_after-cut-vote": ({"prompt": "short_after", "answer_policy": "vote", **CUT}, SEQ, 0.0),
    "short_after-cut-vote-contiguous": (
        {"prompt": "short_after", "answer_policy": "vote", "layout": "contiguous", **CUT},
        SEQ,
        0.0,
    ),
    "team": ({"prompt": "team_after", "layout": "contiguous", "step_headers": False}, SEQ, 0.0),
    "team-cut": (
        {"prompt": "team_after", "layout": "contiguous", "step_headers": False, **CUT},
        SEQ,
        0.0,
    ),
    "team-vote": (
        {
            "prompt": "team_after",
            "layout": "contiguous",
            "step_headers": False,
            "answer_policy": "vote",
        },
        SEQ,
        0.0,
    ),
    "team-vote-t0.7": (
        {
            "prompt": "team_after",
            "layout": "contiguous",
            "step_headers": False,
            "answer_policy": "vote",
        },
        SEQ,
        0.7,
    ),
    # plain_after: the sequential prompt and token rules; W = 1 is exactly the sequential run
    "plain": (PLAIN, SEQ, 0.0),
    "plain-vote": ({**PLAIN, "answer_policy": "vote"}, SEQ, 0.0),
    "plain-cut": ({**PLAIN, **CUT}, SEQ, 0.0),
    "roles-cut-contiguous": ({"prompt": "roles", "layout": "contiguous", **CUT}, SEQ, 0.0),
    "short-cut-contiguous": ({"prompt": "short", "layout": "contiguous", **CUT}, SEQ, 0.0),
}


def settings(variant: str, budgets: list[int], model: str, dtype: str) -> Any:
    from plait.hogwild.evaluate import EvalSettings
    from plait.runtime.sampling import SamplingParams

    if variant not in VARIANTS:
        raise SystemExit(f"unknown variant {variant!r}; one of {sorted(VARIANTS)}")
    hog, seq, temperature = VARIANTS[variant]
    sampling = SamplingParams(temperature=temperature, top_p=0.95) if temperature else None
    return EvalSettings(
        budgets=tuple(budgets),
        hogwild=hog,
        sequential=seq,
        sampling=sampling,
        describe={"model": model, "dtype": dtype, "dataset": "gsm8k", "variant": variant},
    )


def stem(out: Path, variant: str) -> str:
    """Results file stem: hogwild_gsm8k_<variant> for out/gsm8k, else with the folder's name
    (screens in out/screen -> hogwild_gsm8k_screen_<variant>)."""
    tag = out.parent.name
    return f"hogwild_gsm8k_{variant}" if tag == "gsm8k" else f"hogwild_gsm8k_{tag}_{variant}"


def summarize(out: Path, variant: str, model: str) -> dict:
    """Results JSON from `<out>/records.jsonl` (every method on the problems all methods have)."""
    records = read_records(out / "records.jsonl")
    if not records:
        raise SystemExit(f"no records in {out / 'records.jsonl'}: run without --summarize first")
    by_method: dict[str, set[str]] = defaultdict(set)
    for r in records:
        by_method[r.method].add(r.problem)
    table = BudgetTable.from_records(records)
    extra: dict[str, dict[str, Any]] = defaultdict(dict)
    for m in table.methods:
        for b in table.budgets:
            cell = [r for r in records if r.method == m and r.budget == b]
            extra[m][str(b)] = {
                "mean_passes": statistics.mean(r.passes for r in cell) if cell else None,
                "rules": dict(Counter(r.rule for r in cell)),
                "rules_lenient": dict(Counter(r.rule_lenient for r in cell)),
            }
    hog, seq, temperature = VARIANTS[variant]
    summary = out / "table.json"  # absent when the run was stopped between batches
    seconds = json.loads(summary.read_text())["seconds"] if summary.exists() else None
    top = max(table.budgets)
    tokens = {
        m: sum(r.tokens for r in records if r.method == m and r.budget == top) for m in by_method
    }
    payload = {
        "benchmark": "hogwild_gsm8k_accuracy",
        "variant": variant,
        "settings": {"hogwild": hog, "sequential": seq, "temperature": temperature},
        "model": model,
        "problems_per_method": {m: len(p) for m, p in sorted(by_method.items())},
        "budgets": table.budgets,
        "table": table.to_json(),
        "details": extra,
        "solve_seconds_last_invocation": seconds,
        "tokens_at_largest_budget": tokens,
        "note": "accuracy runs are not timed under the lock (hours, niced, shared cores); tokens/s "
        "comes from --speed runs (hogwild_gsm8k_speed.json)",
        "machine": machine(),
    }
    print(table.format())
    save(stem(out, variant), payload)
    (RESULTS / f"{stem(out, variant)}_records.jsonl").write_text(
        (out / "records.jsonl").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return payload


def speed(variants: list[str], model: str, rounds: int, problems: int, passes: int) -> dict:
    """Tokens/s of each variant's hogwild-2 and hogwild-4 runs, interleaved rounds (run it under the lock)."""
    from plait.eval.datasets import load
    from plait.hogwild.evaluate import Method
    from plait.hogwild.solve import solve_batch
    from plait.runtime.loading.loader import load_model

    lm = load_model(model, dtype="bf16")
    qs = [p.question for p in load("gsm8k", problems)]
    rates: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for v in variants:
            for spec in ("hogwild-2", "hogwild-4"):
                s = settings(v, [passes], model, "bf16")
                cfg = s.config(Method.parse(spec))
                t0 = time.perf_counter()
                res = solve_batch(lm.model, lm.tokenizer, qs, cfg)
                dt = time.perf_counter() - t0
                rates[f"{v}/{spec}"].append(sum(r.final.tokens for r in res) / dt)
    table = {
        k: {"median_tokens_per_s": statistics.median(x), "rounds": x} for k, x in rates.items()
    }
    for k, x in table.items():
        print(f"{k:40s} {x['median_tokens_per_s']:8.1f} tok/s")
    payload = {"benchmark": "hogwild_gsm8k_speed", "problems": problems, "passes": passes,
               "table": table, "machine": machine()}  # fmt: skip
    save("hogwild_gsm8k_speed", payload)
    return payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--variant", default="old", help=f"one of {sorted(VARIANTS)}")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=["sequential", "hogwild-2", "hogwild-4"])
    ap.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--batch", type=int, default=50, help="problems per forward pass")
    ap.add_argument("--out", default="out/gsm8k", help="working dir (records per variant)")
    ap.add_argument("--summarize", action="store_true", help="only rebuild the results JSON")
    ap.add_argument("--speed", nargs="+", metavar="VARIANT", help="tokens/s of these variants")
    args = ap.parse_args()
    if args.speed:
        print(json.dumps(speed(args.speed, args.model, rounds=3, problems=4, passes=96)))
        return
    out = Path(args.out) / args.variant
    out.parent.mkdir(parents=True, exist_ok=True)
    model_desc = f"{args.model} (bf16)"
    if not args.summarize:
        from plait.eval.datasets import load
        from plait.hogwild.evaluate import Method, evaluate
        from plait.runtime.loading.loader import load_model

        lm = load_model(args.model, dtype="bf16")
        evaluate(
            lm.model,
            lm.tokenizer,
            load("gsm8k", args.limit),
            [Method.parse(m) for m in args.methods],
            settings(args.variant, args.budgets, args.model, "bf16"),
            out,
            batch=args.batch,
            title=f"{lm.name} on gsm8k, {args.variant}",
        )
    print(json.dumps(summarize(out, args.variant, model_desc)))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
