"""`plait eval hogwild`: accuracy vs budget on GSM8K, AIME 2025 or user JSONL.

Hogwild! with W workers and the sequential baseline run at the same budgets (forward passes) in
one invocation; answers are checked with math-verify; the JSON table and a PNG plot are written
to --out. Records are appended as they finish, so rerunning the same command resumes.
Registered into the `plait eval` group that `plait.eval.cli` owns (eval never imports hogwild).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register_eval(subparsers: Any) -> None:
    """Add `plait eval hogwild` to the `plait eval` group."""
    from plait.eval.cli import evaluation_parsers

    h = evaluation_parsers(subparsers).add_parser(
        "hogwild", help="Hogwild! W workers vs the sequential baseline, accuracy vs budget"
    )
    h.add_argument("--dataset", default="gsm8k", help="gsm8k, aime2025 or a path to a .jsonl file")
    h.add_argument(
        "--limit", type=int, default=50, help="number of problems (default: %(default)s)"
    )
    h.add_argument("--offset", type=int, default=0)
    h.add_argument("--question-key", default="question")
    h.add_argument("--answer-key", default="answer")
    h.add_argument("--model", default="qwen2.5-0.5b")
    h.add_argument(
        "--methods",
        nargs="+",
        default=["sequential", "hogwild-2", "hogwild-4"],
        help="'sequential' and/or 'hogwild-W' (default: %(default)s)",
    )
    h.add_argument("--budgets", type=int, nargs="+", default=[128, 256, 512, 1024])
    h.add_argument("--layout", default="combined")
    h.add_argument("--batch", type=int, default=4, help="problems solved together in one forward")
    h.add_argument("--finisher-tokens", type=int, default=16)
    h.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    h.add_argument("--device", default="cpu")
    h.add_argument(
        "--out", default="out/eval_hogwild", help="output directory (default: %(default)s)"
    )
    h.add_argument("--no-progress", action="store_true")
    h.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from plait.eval.datasets import load
    from plait.hogwild.evaluate import Method, evaluate
    from plait.runtime.loader import load_model

    methods = [Method.parse(m) for m in args.methods]
    problems = load(args.dataset, args.limit, args.offset, args.question_key, args.answer_key)
    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    title = f"{lm.name} on {args.dataset} (n={len(problems)})"
    table = evaluate(
        lm.model,
        lm.tokenizer,
        problems,
        methods,
        args.budgets,
        args.out,
        batch=args.batch,
        progress=not args.no_progress,
        layout=args.layout,
        finisher_max_tokens=args.finisher_tokens,
        title=title,
    )
    print(table.format())
    print(f"table: {args.out}/table.json  plot: {args.out}/curve.png")
    print(
        json.dumps({"dataset": args.dataset, "problems": len(problems), "table": table.to_json()})
    )
    return 0
