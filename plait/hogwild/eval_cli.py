"""`plait eval hogwild`: accuracy vs budget on GSM8K, AIME 2025 or user JSONL.

Hogwild! with W workers and the sequential baseline run at the same budgets (forward passes) in
one invocation; answers are scored strictly (`\\boxed{}`) and leniently ("the answer is N", the
last number) with math-verify; the JSON table and a PNG plot are written to --out. Records are
appended as they finish, so rerunning the same command resumes; a rerun with other settings
(model, dtype, budgets, layout, prompts, finisher, sampling, dataset and its hash) is refused
unless --overwrite. Registered into the `plait eval` group that `plait.eval.cli` owns (eval never
imports hogwild).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

EVAL_EPILOG = """examples:
  plait eval hogwild --dataset gsm8k --limit 50 --budgets 256 512 1024
  plait eval hogwild --methods sequential hogwild-2 --preset paper --out out/paper
  plait eval hogwild --dataset mine.jsonl --question-key q --answer-key a --limit 20
  plait eval hogwild ... --overwrite     # replace results made with other settings
"""


def register_eval(subparsers: Any) -> None:
    """Add `plait eval hogwild` to the `plait eval` group."""
    from plait.arguments import DTYPE_CHOICES, DTYPE_HELP, HelpFormatter, finite_float
    from plait.eval.cli import evaluation_parsers

    h = evaluation_parsers(subparsers).add_parser(
        "hogwild",
        help="Hogwild! W workers vs the sequential baseline, accuracy vs budget",
        formatter_class=HelpFormatter,
        epilog=EVAL_EPILOG,
    )
    h.add_argument("--dataset", default="gsm8k", help="gsm8k, aime2025 or a path to a .jsonl file")
    h.add_argument("--limit", type=int, default=50, help="number of problems")
    h.add_argument("--offset", type=int, default=0, help="skip this many problems first")
    h.add_argument("--question-key", default="question", help="JSONL field of the question")
    h.add_argument("--answer-key", default="answer", help="JSONL field of the gold answer")
    h.add_argument("--model", default="qwen2.5-0.5b", help="bundled name, HF directory or .gguf")
    h.add_argument("--methods", nargs="+", default=["sequential", "hogwild-2", "hogwild-4"],
                   help="'sequential' and/or 'hogwild-W'")  # fmt: skip
    h.add_argument("--budgets", type=int, nargs="+", default=[256, 512, 1024])
    h.add_argument("--preset", default="auto", help="auto | paper | small (docs/hogwild.md)")
    h.add_argument("--layout", help="Hogwild layout (default: the preset's)")
    h.add_argument(
        "--prompt", help="Hogwild prompt variant: plain_after | full | short | roles | ..."
    )
    h.add_argument("--sequential-prompt", help="baseline prompt: boxed | answer_is | answer_boxed")
    h.add_argument(
        "--loop-guard", choices=["off", "cut", "penalise"], help="(default: the preset's)"
    )
    h.add_argument("--temperature", type=finite_float, help="0 = greedy (default: the preset's)")
    h.add_argument("--batch", type=int, default=16, help="problems solved together in one forward")
    h.add_argument("--finisher-tokens", type=int, default=16, help="max finisher tokens")
    h.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    h.add_argument("--device", default="cpu")
    h.add_argument("--out", default="out/eval_hogwild", help="output directory")
    h.add_argument(
        "--overwrite", action="store_true", help="replace results made with other settings"
    )
    h.add_argument("--no-progress", action="store_true")
    h.set_defaults(func=_cmd_eval)


def settings_for(args: argparse.Namespace, preset: Any, describe: dict[str, Any]) -> Any:
    """`EvalSettings`: the preset's fields, then the options the user set."""
    from plait.hogwild.evaluate import EvalSettings
    from plait.hogwild.presets import fit_layout
    from plait.runtime.sampling import SamplingParams

    hog = dict(preset.hogwild)
    seq = dict(preset.sequential)
    hog.update({k: v for k, v in (("layout", args.layout), ("prompt", args.prompt),
                                  ("loop_guard", args.loop_guard)) if v is not None})  # fmt: skip
    fit_layout(hog, args.layout)
    if args.sequential_prompt is not None:
        seq["prompt"] = args.sequential_prompt
    for fields in (hog, seq):
        fields["finisher_max_tokens"] = args.finisher_tokens
    t = preset.temperature if args.temperature is None else args.temperature
    sampling = SamplingParams(temperature=t, top_p=preset.top_p) if t else None
    return EvalSettings(
        budgets=tuple(args.budgets), hogwild=hog, sequential=seq, sampling=sampling,
        describe={**describe, "preset": preset.name},
    )  # fmt: skip


def _cmd_eval(args: argparse.Namespace) -> int:
    from plait.arguments import require_extra
    from plait.errors import UsageError
    from plait.eval.datasets import fingerprint, load
    from plait.hogwild.evaluate import Method, evaluate
    from plait.hogwild.presets import get_preset
    from plait.outputs import check_writable, check_writable_dir
    from plait.runtime.loading.loader import load_model

    for module in ("matplotlib", "math_verify"):  # the plot and the answer checks, before the work
        require_extra(module, "eval", "plait eval hogwild")
    methods = [Method.parse(m) for m in args.methods]
    if args.batch < 1:
        raise UsageError(f"--batch must be >= 1, got {args.batch}")
    if args.temperature is not None and args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    problems = load(args.dataset, args.limit, args.offset, args.question_key, args.answer_key)
    out = check_writable_dir(args.out, "--out")
    for name in ("records.jsonl", "transcripts.jsonl", "manifest.json", "table.json", "curve.png"):
        if out.is_dir():  # a file it writes must not be the input
            check_writable(out / name, "--out", [("--dataset", args.dataset)])
    dtype = args.dtype  # the same for every --batch: the records never depend on it
    describe = {"model": args.model, "dtype": dtype, "dataset": args.dataset,
                "dataset_sha256": fingerprint(args.dataset)}  # fmt: skip
    if args.dataset.endswith(".jsonl"):  # the keys choose the gold answers: a resume must agree
        describe |= {"question_key": args.question_key, "answer_key": args.answer_key}
    probe = settings_for(
        args, get_preset("paper" if args.preset == "auto" else args.preset), describe
    )
    for m in methods:
        probe.config(m)  # every setting checked before the model loads
    lm = load_model(args.model, dtype=dtype, device=args.device)
    settings = settings_for(args, get_preset(args.preset, lm.model.config), describe)

    def show(table: Any) -> None:  # the results, printed before the plot is drawn
        print(table.format())
        print(f"table: {args.out}/table.json  plot: {args.out}/curve.png")
        print(json.dumps({"dataset": args.dataset, "problems": len(problems),
                          "table": table.to_json()}), flush=True)  # fmt: skip

    evaluate(
        lm.model, lm.tokenizer, problems, methods, settings, args.out, batch=args.batch,
        progress=not args.no_progress, title=f"{lm.name} on {args.dataset} (n={len(problems)})",
        overwrite=args.overwrite, show=show,
    )  # fmt: skip
    return 0
