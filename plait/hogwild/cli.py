"""`plait hogwild`: solve a problem with W workers (live view, JSON transcript); registers the rest.

Settings come from a preset (`--preset auto`: `small` for models under 3B parameters, `paper`
otherwise; `plait.hogwild.presets`), and any option given on the command line wins over it.
Everything the user typed is checked before the model loads (config fields, `--file`, `--json`).
`plait demo` lives in `plait.hogwild.demo` (it uses the options and helpers here), `plait eval
hogwild` in `plait.hogwild.eval_cli`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from plait.arguments import DTYPE_CHOICES, DTYPE_HELP, HelpFormatter, finite_float, read_text_input
from plait.errors import UsageError
from plait.outputs import atomic_write_text

HOGWILD_EPILOG = """examples:
  plait hogwild "A farmer has 12 cows and buys 5 more. How many cows?"
  plait hogwild --file problem.txt --workers 3 --budgets 256 512 --json run.json
  plait hogwild "..." --preset paper --layout interleaved --loop-guard cut --temperature 0.5
  plait hogwild "..." --workers 10 --names A B C D E F G H I J
"""


def add_run_args(p: argparse.ArgumentParser, workers: int, budgets: list[int]) -> None:
    """Options shared by `plait hogwild` and `plait demo` (unset ones come from the preset)."""
    p.add_argument("--model", default="qwen2.5-0.5b", help="bundled name, HF directory or .gguf")
    p.add_argument("--workers", "-w", type=int, default=workers, help="number of workers W")
    p.add_argument(
        "--names", nargs="+", help="worker names (default: Alice, Bob, ..., Worker9, ...)"
    )
    p.add_argument("--budgets", type=int, nargs="+", default=budgets,
                   help="forward-pass budgets; a snapshot (with the finisher) at each")  # fmt: skip
    p.add_argument("--preset", default="auto", help="auto | paper | small (see docs/hogwild.md)")
    p.add_argument("--layout", help="combined | interleaved | contiguous (default: the preset's)")
    p.add_argument("--prompt", help="prompt variant: plain_after | full | short | roles | ... "
                   "(docs/hogwild.md; default: the preset's)")  # fmt: skip
    p.add_argument("--loop-guard", choices=["off", "cut", "penalise"],
                   help="step-level loop guard (default: the preset's)")  # fmt: skip
    p.add_argument(
        "--no-instant", action="store_true", help="workers see others' tokens one pass late"
    )
    p.add_argument("--temperature", type=finite_float, help="0 = greedy (default: the preset's)")
    p.add_argument("--top-p", type=finite_float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tips", action="store_true", help="add the collaboration tips to the prompt")
    p.add_argument("--few-shot", action="store_true", help="add our worked example to the prompt")
    p.add_argument("--interjection-every", type=int,
                   help="tokens between interjections, 0 = off (default: the preset's, 1024)")  # fmt: skip
    p.add_argument("--interjection-policy", choices=["global", "per_worker", "random_worker"])
    p.add_argument("--finisher-tokens", type=int, default=16, help="max finisher tokens")
    p.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                   help=DTYPE_HELP)  # fmt: skip
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="PATH", help="write the JSON transcript here")
    p.add_argument("--no-live", action="store_true", help="print finished steps instead of live columns")  # fmt: skip


def register(subparsers: Any) -> None:
    """Add `hogwild` and `eval hogwild` (`plait demo` registers itself: plait.hogwild.demo)."""
    from plait.hogwild.eval_cli import register_eval

    p = subparsers.add_parser(
        "hogwild",
        help="solve a problem with W Hogwild! workers over one shared cache",
        formatter_class=HelpFormatter,
        epilog=HOGWILD_EPILOG,
    )
    p.add_argument("problem", nargs="?", help="the problem text (or use --file)")
    p.add_argument("--file", help="read the problem from this UTF-8 text file ('-' = stdin)")
    p.add_argument("--task", default="math", choices=["math", "code"])
    add_run_args(p, workers=2, budgets=[512])
    p.set_defaults(func=_cmd_hogwild)
    register_eval(subparsers)


def read_problem(args: argparse.Namespace) -> str:
    """The problem from the argument or --file (one of them, non-empty, UTF-8)."""
    if args.file and args.problem:
        raise UsageError("give the problem either as an argument or with --file, not both")
    if args.file:
        return read_text_input(args.file, "--file", "the problem")
    text = args.problem or ""
    if not text.strip():
        raise UsageError(
            "no problem given; pass the problem text as an argument or with --file PATH"
        )
    return text


def config_fields(
    args: argparse.Namespace, preset: Any, sequential: bool = False
) -> dict[str, Any]:
    """`HogwildConfig` fields: the preset's, then every option the user set."""
    from plait.hogwild.presets import fit_layout

    fields = dict(preset.sequential if sequential else preset.hogwild)
    given = {
        "layout": args.layout, "prompt": None if sequential else args.prompt,
        "loop_guard": args.loop_guard, "interjection_every": args.interjection_every,
        "interjection_policy": args.interjection_policy,
        "collaboration_tips": args.tips or None, "few_shot": args.few_shot or None,
        "instant": False if args.no_instant else None,
        "names": None if sequential or not args.names else tuple(args.names),
    }  # fmt: skip
    fields.update({k: v for k, v in given.items() if v is not None})
    fit_layout(fields, args.layout)
    workers = 1 if sequential else args.workers
    fields.update(workers=workers, sequential=sequential, budgets=tuple(args.budgets),
                  task=getattr(args, "task", "math"), finisher_max_tokens=args.finisher_tokens,
                  seed=args.seed)  # fmt: skip
    return fields


def sampling_for(args: argparse.Namespace, preset: Any) -> Any:
    from plait.runtime.sampling import SamplingParams

    t = preset.temperature if args.temperature is None else args.temperature
    return SamplingParams(temperature=t, top_p=args.top_p if t else 1.0)


def check_args(args: argparse.Namespace) -> None:
    """Validate every user setting (with the paper preset) and --json before the model loads."""
    from plait.hogwild.config import HogwildConfig
    from plait.hogwild.presets import get_preset
    from plait.outputs import check_writable

    if args.preset != "auto":
        get_preset(args.preset)
    HogwildConfig(**config_fields(args, get_preset("paper")))
    if args.temperature is not None and args.temperature < 0:
        raise UsageError(f"--temperature must be >= 0, got {args.temperature}")
    if args.json:
        check_writable(args.json, "--json", [("--file", getattr(args, "file", None))])


def load(args: argparse.Namespace) -> tuple[Any, Any]:
    """(loaded model, resolved preset)."""
    from plait.hogwild.presets import get_preset
    from plait.runtime.loading.loader import load_model

    print(f"loading {args.model} ...", file=sys.stderr)
    lm = load_model(args.model, dtype=args.dtype, device=args.device)
    return lm, get_preset(args.preset, lm.model.config)


def solve(lm: Any, cfg: Any, sampling: Any, problem: str, live: bool) -> dict[str, Any]:
    """Solve `problem` with a live (terminal) or plain view; the result, seconds and tokens."""
    from plait.hogwild.events import DoneEvent
    from plait.hogwild.live import LiveView, PlainView
    from plait.hogwild.solve import stream

    view = LiveView(cfg.resolved_names) if live else PlainView()
    t0, result = time.perf_counter(), None
    for ev in stream(lm.model, lm.tokenizer, problem, cfg, sampling=sampling):
        view(ev)
        if isinstance(ev, DoneEvent):
            result = ev.result
    if result is None:
        raise RuntimeError("the Hogwild! run ended without a result")
    return {"result": result, "seconds": time.perf_counter() - t0, "tokens": result.final.tokens}


def transcript_json(lm: Any, cfg: Any, preset: Any, run: dict[str, Any]) -> dict[str, Any]:
    result, final = run["result"], run["result"].final
    keys = ("workers", "layout", "instant", "budgets", "prompt", "loop_guard",
            "interjection_every", "interjection_policy")  # fmt: skip
    return {
        "model": lm.name,
        "preset": preset.name,
        "config": {k: getattr(cfg, k) for k in keys},
        "seconds": run["seconds"],
        "tokens": run["tokens"],
        "duplicate_step_rate": final.duplicate_rate,
        "cut_steps": final.cut_steps,
        **result.to_json(),
    }


def _cmd_hogwild(args: argparse.Namespace) -> int:
    from plait.hogwild.config import HogwildConfig

    problem = read_problem(args)
    check_args(args)
    lm, preset = load(args)
    cfg = HogwildConfig(**config_fields(args, preset))
    run = solve(
        lm, cfg, sampling_for(args, preset), problem, not args.no_live and sys.stdout.isatty()
    )
    final, s = run["result"].final, run["seconds"]
    print(f"\nanswer: {final.answer!r} (from {final.answer_source}; {final.passes} passes, "
          f"{run['tokens']} tokens, {s:.1f} s, {run['tokens'] / s:.1f} tokens/s; "
          f"duplicate steps {final.duplicate_steps}/{final.finished_steps}, "
          f"cut {final.cut_steps})")  # fmt: skip
    if args.json:
        out = transcript_json(lm, cfg, preset, run)
        atomic_write_text(args.json, json.dumps(out, indent=2, default=str))
        print(f"transcript written to {args.json}")
    return 0
