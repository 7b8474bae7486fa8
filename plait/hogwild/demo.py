"""`plait demo`: W Hogwild! workers of the bundled model divide a problem live, then the sequential
baseline solves the same problem, and both are printed side by side.

The problem is a GSM8K test problem that the small-model preset solves in the measured runs; the
demo prints where it comes from, the preset's settings and the GSM8K-50 accuracy table those
settings come from (`DEMO_TABLE`, copied from benchmarks/results and checked against them by
tests/hogwild/test_demo.py), so the choice can be judged. Greedy decoding from seed 0 makes the
run repeatable.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from plait.arguments import HelpFormatter
from plait.errors import UsageError
from plait.hogwild.cli import add_run_args, check_args, config_fields, load, sampling_for, solve

DEMO_SOURCE = "GSM8K test problem 1 (the second; id gsm8k-1)"
DEMO_PROBLEM = (
    "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total "
    "does it take?"
)
DEMO_ANSWER = "3"
DEMO_METHOD = "hogwild-2"
"""The method of `DEMO_RESULTS[0]` that solved the demo problem there (the demo's default W)."""
DEMO_RESULTS = (
    "benchmarks/results/hogwild_gsm8k_plain.json",
    "benchmarks/results/hogwild_gsm8k_seq-answer_is_after.json",
)
"""The results files behind `DEMO_TABLE`: the preset's Hogwild runs and its sequential baseline."""
DEMO_TABLE = """GSM8K (first n test problems): accuracy % strict/lenient at 256 / 512 / 1024 passes, duplicate-step rate at the largest
method      variant                n       256       512      1024  dup
hogwild-2   plain                 50    14/14     16/16     16/16   35%
hogwild-4   plain                 50    10/10     10/10     10/10   84%
sequential  seq-answer_is_after   50    20/20     32/32     32/32   10%"""


def format_table(payloads: list[dict[str, Any]]) -> str:
    """The accuracy table of `bench_hogwild_gsm8k` results (one row per method of each file):
    strict / lenient % at each budget, and the duplicate-step rate at the largest budget."""
    budgets = sorted({int(b) for p in payloads for b in p["budgets"]})
    lines = [
        "GSM8K (first n test problems): accuracy % strict/lenient at "
        + " / ".join(map(str, budgets))
        + " passes, duplicate-step rate at the largest",
        f"{'method':<12}{'variant':<21}{'n':>3}" + "".join(f"{b:>10}" for b in budgets) + "  dup",
    ]
    for p in payloads:
        for method, cells in p["table"].items():
            n = p["problems_per_method"][method]
            row = f"{method:<12}{p['variant']:<21}{n:>3}"
            for b in budgets:
                c = cells.get(str(b))
                row += (
                    f"{100 * c['accuracy']:>6.0f}/{100 * c['accuracy_lenient']:<3.0f}"
                    if c
                    else f"{'-':>7}{'':3}"
                )
            top = cells[str(max(int(b) for b in cells))]
            lines.append(f"{row}{100 * top['duplicate_rate']:>4.0f}%")
    return "\n".join(lines)


DEMO_EPILOG = """examples:
  plait demo                      # 2 workers, the small-model preset, then the sequential run
  plait demo --workers 4 --budgets 512
  plait demo --preset paper       # the paper's settings (the bundled 0.5B model loops with them)
"""


def register(subparsers: Any) -> None:
    """Add `plait demo` (plait/cli.py calls this)."""
    d = subparsers.add_parser(
        "demo",
        help="Hogwild! workers of the bundled Qwen2.5-0.5B solve a word problem, vs sequential",
        formatter_class=HelpFormatter,
        epilog=DEMO_EPILOG,
    )
    add_run_args(d, workers=2, budgets=[512])
    d.add_argument("--no-sequential", action="store_true", help="skip the sequential comparison")
    d.set_defaults(func=_cmd_demo, problem=None, file=None, task="math")


def _cmd_demo(args: argparse.Namespace) -> int:
    from plait.eval.checking import is_correct
    from plait.hogwild.config import HogwildConfig

    if not 1 <= args.workers <= 8:
        raise UsageError("--workers must be between 1 and 8 for the demo (2-4 recommended)")
    check_args(args)
    lm, preset = load(args)
    cfg = HogwildConfig(**config_fields(args, preset))
    sampling = sampling_for(args, preset)
    print(f"Problem ({DEMO_SOURCE}): {DEMO_PROBLEM}\n(expected answer: {DEMO_ANSWER})\n")
    print(f"Preset {preset.name!r}: {preset.note}")
    print(
        f"Hogwild settings: {dict(config_fields(args, preset))}, temperature {sampling.temperature}"
    )
    print(f"{DEMO_TABLE}\n(from {', '.join(DEMO_RESULTS)})\n")
    live = not args.no_live and sys.stdout.isatty()
    runs = {f"Hogwild W={cfg.workers}": solve(lm, cfg, sampling, DEMO_PROBLEM, live)}
    if not args.no_sequential:
        seq = HogwildConfig(**config_fields(args, preset, sequential=True))
        print("\nThe sequential baseline on the same problem ...", file=sys.stderr)
        runs["sequential"] = solve(lm, seq, sampling, DEMO_PROBLEM, live=False)
    print(f"\n{'method':<14}{'answer':>10}{'from':>16}{'passes':>8}{'seconds':>9}{'tokens':>8}")
    for name, run in runs.items():
        f = run["result"].final
        print(f"{name:<14}{f.answer!s:>10}{f.answer_source:>16}{f.passes:>8}{run['seconds']:>9.1f}"
              f"{run['tokens']:>8}")  # fmt: skip
    answer = runs[f"Hogwild W={cfg.workers}"]["result"].final.answer
    print(
        "correct!"
        if is_correct(answer, DEMO_ANSWER)
        else f"not the expected answer ({DEMO_ANSWER})"
    )
    return 0
