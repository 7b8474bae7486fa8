"""Hogwild! accuracy vs budget on GSM8K: W-worker Hogwild against the sequential baseline.

Runs `plait.hogwild.evaluate` (resumable: records are appended per batch to `<out>/records.jsonl`,
finished (method, problem) pairs are skipped) and writes the summary to benchmarks/results:
`<name>.json` (accuracy with 95% Wilson intervals, early stops, mean passes used and where the
answers came from, per method and budget), `<name>.png` (the curves) and `<name>_records.jsonl`
(every record, so a later session can resume or re-plot). `--summarize` skips solving and only
rebuilds the summary from the records already in `<out>`; `--resume` first seeds an empty `<out>`
with the committed `<name>_records.jsonl`, so a later session continues where the last one stopped.

    python benchmarks/bench_hogwild_gsm8k.py --limit 50               # hours on 2 CPU cores
    python benchmarks/bench_hogwild_gsm8k.py --out DIR --summarize   # table + plot from records
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine, save  # noqa: E402

from plait.eval.curves import BudgetTable, read_records  # noqa: E402
from plait.eval.plots import plot_budget_curves  # noqa: E402


def summarize(out: Path, name: str, model: str, dataset: str, note: str) -> dict:
    """Build the results JSON and PNG from `<out>/records.jsonl` (only problems every method has)."""
    records = read_records(out / "records.jsonl")
    if not records:
        raise SystemExit(f"no records in {out / 'records.jsonl'}: run without --summarize first")
    by_method: dict[str, set[str]] = defaultdict(set)
    for r in records:
        by_method[r.method].add(r.problem)
    common = set.intersection(*by_method.values())
    kept = [r for r in records if r.problem in common]
    table = BudgetTable.from_records(kept)
    passes: dict[str, dict[str, float]] = defaultdict(dict)
    sources: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
    for m in table.methods:
        for b in table.budgets:
            cell = [r for r in kept if r.method == m and r.budget == b]
            passes[m][str(b)] = statistics.mean(r.passes for r in cell)
            kinds = Counter(r.source.split(":")[0] for r in cell)
            sources[m][str(b)] = dict(sorted(kinds.items()))
    png = plot_budget_curves(
        table, RESULTS / f"{name}.png", title=f"{model} on {dataset}, n={len(common)}"
    )
    shutil.copyfile(out / "records.jsonl", RESULTS / f"{name}_records.jsonl")
    payload = {
        "benchmark": "hogwild_accuracy_vs_budget",
        "model": model,
        "dataset": dataset,
        "n": len(common),
        "problems_per_method": {m: len(p) for m, p in sorted(by_method.items())},
        "budgets": table.budgets,
        "table": table.to_json(),
        "mean_passes_used": passes,
        "answer_sources": sources,
        "machine": machine(),
        "note": note,
        "plot": png.name,
    }
    print(table.format())
    save(name, payload)
    return payload


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-0.5b")
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--dataset", default="gsm8k")
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--methods", nargs="+", default=["sequential", "hogwild-2", "hogwild-4"])
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--batch", type=int, default=8, help="problems per forward pass")
    ap.add_argument("--out", default="out/bench_hogwild_gsm8k", help="working dir (records)")
    ap.add_argument("--name", default="hogwild_gsm8k_qwen05", help="results file stem")
    ap.add_argument("--summarize", action="store_true", help="only rebuild table and plot")
    ap.add_argument("--note", default="", help="free text stored in the results JSON")
    ap.add_argument(
        "--resume", action="store_true", help="seed <out> with the committed records first"
    )
    args = ap.parse_args()
    out = Path(args.out)
    committed = RESULTS / f"{args.name}_records.jsonl"
    if args.resume and not (out / "records.jsonl").exists():
        if not committed.exists():
            raise SystemExit(f"--resume: {committed} does not exist; run without --resume")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(committed, out / "records.jsonl")
    model_desc = f"{args.model} ({args.dtype}, greedy)"
    if not args.summarize:
        from plait.eval.datasets import load
        from plait.hogwild.evaluate import Method, evaluate
        from plait.runtime.loader import load_model

        lm = load_model(args.model, dtype=args.dtype)
        evaluate(
            lm.model,
            lm.tokenizer,
            load(args.dataset, args.limit),
            [Method.parse(m) for m in args.methods],
            args.budgets,
            out,
            batch=args.batch,
            title=f"{lm.name} on {args.dataset}",
        )
    payload = summarize(out, args.name, model_desc, args.dataset, args.note)
    print(json.dumps(payload))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
