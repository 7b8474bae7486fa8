"""`plait hogwild` (solve a problem with W workers, live view, JSON transcript) and `plait demo`.

`plait demo` is the README's first command: 2-4 workers of the bundled Qwen2.5-0.5B solve a
short word problem on the CPU while the terminal shows them side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

DEMO_PROBLEM = (
    "A bakery sells muffins for 3 dollars each and cookies for 2 dollars each. On Monday it sold "
    "14 muffins and 25 cookies. On Tuesday it sold twice as many muffins as on Monday and 10 fewer "
    "cookies than on Monday. How much money did the bakery make on the two days together?"
)
DEMO_ANSWER = "206"


def _add_run_args(p: argparse.ArgumentParser, workers: int, budgets: list[int]) -> None:
    p.add_argument(
        "--model",
        default="qwen2.5-0.5b",
        help="bundled name, HF directory or .gguf (default: %(default)s)",
    )
    p.add_argument(
        "--workers",
        "-w",
        type=int,
        default=workers,
        help="number of workers W (default: %(default)s)",
    )
    p.add_argument(
        "--budgets",
        type=int,
        nargs="+",
        default=budgets,
        help="forward-pass budgets; a snapshot (with the finisher) at each (default: %(default)s)",
    )
    p.add_argument(
        "--layout",
        default="combined",
        help="combined | interleaved | contiguous (default: %(default)s)",
    )
    p.add_argument(
        "--no-instant", action="store_true", help="workers see others' tokens one pass late"
    )
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tips", action="store_true", help="add the collaboration tips to the prompt")
    p.add_argument("--few-shot", action="store_true", help="add our worked example to the prompt")
    p.add_argument(
        "--interjection-every",
        type=int,
        default=1024,
        help="tokens between interjections (0 = off)",
    )
    p.add_argument(
        "--interjection-policy", default="global", choices=["global", "per_worker", "random_worker"]
    )
    p.add_argument(
        "--finisher-tokens", type=int, default=16, help="max finisher tokens (default: %(default)s)"
    )
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="PATH", help="write the JSON transcript here")
    p.add_argument(
        "--no-live", action="store_true", help="print finished steps instead of live columns"
    )


def register(subparsers: Any) -> None:
    """Add `hogwild`, `demo` and `eval hogwild`."""
    from plait.hogwild.eval_cli import register_eval

    p = subparsers.add_parser(
        "hogwild", help="solve a problem with W Hogwild! workers over one shared cache"
    )
    p.add_argument("problem", nargs="?", help="the problem text (or use --file)")
    p.add_argument("--file", help="read the problem from this file")
    p.add_argument("--task", default="math", choices=["math", "code"])
    _add_run_args(p, workers=2, budgets=[512])
    p.set_defaults(func=_cmd_hogwild)
    d = subparsers.add_parser(
        "demo", help="2-4 Hogwild! workers of the bundled Qwen2.5-0.5B solve a word problem"
    )
    _add_run_args(d, workers=2, budgets=[384])
    d.set_defaults(func=_cmd_demo, problem=None, file=None, task="math")
    register_eval(subparsers)


def _problem(args: argparse.Namespace) -> str:
    if args.file:
        return Path(args.file).read_text(encoding="utf-8")
    if args.problem:
        return str(args.problem)
    raise SystemExit("plait hogwild: give the problem as an argument or with --file PATH")


def run(args: argparse.Namespace, problem: str) -> dict[str, Any]:
    """Load the model, solve `problem` with live output, return the JSON transcript."""
    from plait.hogwild.config import HogwildConfig
    from plait.hogwild.engine import HogwildEngine
    from plait.hogwild.events import DoneEvent
    from plait.hogwild.live import LiveView, PlainView
    from plait.runtime.loader import load_model
    from plait.runtime.sampling import SamplingParams

    cfg = HogwildConfig(
        workers=args.workers,
        layout=args.layout,
        instant=not args.no_instant,
        budgets=tuple(args.budgets),
        task=args.task,
        collaboration_tips=args.tips,
        few_shot=args.few_shot,
        interjection_every=args.interjection_every,
        interjection_policy=args.interjection_policy,
        finisher_max_tokens=args.finisher_tokens,
        seed=args.seed,
    )
    print(f"loading {args.model} ...", file=sys.stderr)
    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    eng = HogwildEngine(
        lm.model,
        lm.tokenizer,
        cfg,
        sampling=SamplingParams(temperature=args.temperature, top_p=args.top_p),
    )
    live = not args.no_live and sys.stdout.isatty()
    view = LiveView(cfg.resolved_names) if live else PlainView()
    t0, result, tokens = time.perf_counter(), None, 0
    for ev in eng.stream(problem):
        view(ev)
        tokens += type(ev).__name__ == "TokenEvent"
        if isinstance(ev, DoneEvent):
            result = ev.result
    seconds = time.perf_counter() - t0
    assert result is not None
    final = result.final
    print(
        f"\nanswer: {final.answer!r} (from {final.answer_source}; {final.passes} passes, {tokens} tokens, "
        f"{seconds:.1f} s, {tokens / seconds:.1f} tokens/s)"
    )
    out = {
        "model": lm.name,
        "config": {
            k: getattr(cfg, k)
            for k in (
                "workers",
                "layout",
                "instant",
                "budgets",
                "interjection_every",
                "interjection_policy",
            )
        },
        "seconds": seconds,
        "tokens": tokens,
        **result.to_json(),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
        print(f"transcript written to {args.json}")
    return out


def _cmd_hogwild(args: argparse.Namespace) -> int:
    run(args, _problem(args))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    if not 1 <= args.workers <= 8:
        raise SystemExit("plait demo: --workers must be between 1 and 8 (2-4 recommended)")
    print(f"Problem: {DEMO_PROBLEM}\n(expected answer: {DEMO_ANSWER})\n")
    out = run(args, DEMO_PROBLEM)
    print(
        "correct!"
        if out["snapshots"][-1]["answer"] == DEMO_ANSWER
        else "(not the expected answer: the bundled 0.5B model collaborates poorly - workers "
        "tend to repeat each other's steps - and more workers, budget or sampling did not fix "
        "it in our runs; measurements in docs/hogwild.md. Try a larger model with --model.)"
    )
    return 0
