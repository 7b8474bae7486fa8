"""`plait threads run | pack | logprobs | stats | validate | normalize | view`.

Trajectories live in JSON Lines files (see `plait.threads.data.records`); `--tokenizer` picks the
codec (`char`, `smollm2`, or a local Hugging Face directory). `--json` prints one JSON object for
scripts. This module only builds the parsers; each command's module is imported when it runs, so
`plait --help` stays light. Bad input raises a `UsageError` (or another ValueError / OSError) that
`plait/cli.py` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

from plait.arguments import DTYPE_CHOICES, DTYPE_HELP, HelpFormatter, finite_float


def _command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """A `func` that imports `plait.threads.cli.<module>` on use and calls its `name`."""

    def run(args: argparse.Namespace) -> int:
        return int(getattr(importlib.import_module(f"plait.threads.cli.{module}"), name)(args))

    return run


def _parser(sub: Any, name: str, about: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=about, description=about, formatter_class=HelpFormatter,
                          epilog="examples:\n" + examples)  # fmt: skip


def _common(p: argparse.ArgumentParser, *, json_flag: bool = True) -> None:
    p.add_argument("--tokenizer", default="char", help="char | smollm2 | a local HF tokenizer dir")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print one JSON object")


def register(subparsers: Any) -> None:
    top = subparsers.add_parser(
        "threads", help="ThreadWeaver: parallel reasoning threads", formatter_class=HelpFormatter,
        description="ThreadWeaver trajectories: check, measure, view, pack for training, generate.",
        epilog="examples:\n  plait threads validate trajs.jsonl\n  plait threads stats trajs.jsonl "
        "--baseline base.jsonl\n  plait threads ACTION --help",
    )  # fmt: skip
    sub = top.add_subparsers(dest="threads_command", metavar="ACTION")
    top.set_defaults(func=lambda args: (top.print_help(), 0)[1])
    _reading(sub)
    _pack(sub)
    _logprobs(sub)
    _run(sub)


def _reading(sub: Any) -> None:
    p = _parser(sub, "validate", "strict format check of every trajectory (exit 1 if one fails)",
                "  plait threads validate trajs.jsonl\n  plait threads validate wild.jsonl "
                "--lenient --json")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--max-outlines", type=int, default=50, help="outlines allowed per block")
    p.add_argument("--lenient", action="store_true",
                   help="first normalise variants other pipelines write (whitespace, numbering, "
                   "<Conclusion>); report what was fixed")  # fmt: skip
    _common(p)
    p.set_defaults(func=_command("trajectories", "cmd_validate"))

    p = _parser(sub, "normalize", "rewrite trajectories in plait's canonical format (lenient read)",
                "  plait threads normalize wild.jsonl --out canonical.jsonl\n"
                "  plait threads normalize wild.jsonl --out canonical.jsonl --tokenizer smollm2")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--out", required=True, help="canonical trajectories (.jsonl), written whole")
    p.add_argument("--keep-invalid", action="store_true",
                   help="write trajectories that stay invalid after normalising (else: error)")  # fmt: skip
    _common(p)
    p.set_defaults(func=_command("trajectories", "cmd_normalize"))

    p = _parser(sub, "stats", "critical path, self-parallelism, ratios (and speedup)",
                "  plait threads stats trajs.jsonl\n  plait threads stats trajs.jsonl "
                "--baseline base.jsonl --json\n  plait threads stats trajs.jsonl "
                "--parallel-ratio inside   # the release's convention")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--baseline", help="baseline trajectories (.jsonl) for speedup vs baseline")
    p.add_argument("--partial-baseline", action="store_true",
                   help="compare on the problems both files have (else every problem of FILE "
                   "must be in the baseline)")  # fmt: skip
    p.add_argument("--parallel-ratio", choices=["block", "inside"], default="block",
                   help="count <Parallel>/</Parallel> in the block (block, plait) or not "
                   "(inside, the release)")  # fmt: skip
    _common(p)
    p.set_defaults(func=_command("trajectories", "cmd_stats"))

    p = _parser(sub, "view", "write a static HTML view of one trajectory",
                "  plait threads view trajs.jsonl --out view.html\n"
                "  plait threads view trajs.jsonl --index 3 --out view3.html")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl)")
    p.add_argument("--index", type=int, default=0, help="which trajectory (0-based)")
    p.add_argument("--out", required=True, help="output .html path")
    _common(p, json_flag=False)
    p.set_defaults(func=_command("trajectories", "cmd_view"))


def _pack(sub: Any) -> None:
    p = _parser(sub, "pack", "extract units and trie-pack them into training rows",
                "  plait threads pack trajs.jsonl --row-length 4096 --json\n"
                "  plait threads pack trajs.jsonl --out rows.pt")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl); each must pass `threads validate`")
    p.add_argument("--row-length", type=int, default=4096, help="tokens per packed row")
    p.add_argument("--out", help="save the rows with torch.save (.pt)")
    _common(p)
    p.set_defaults(func=_command("pack", "cmd_pack"))


def _logprobs(sub: Any) -> None:
    p = _parser(sub, "logprobs", "RL: the trainer's log-probs against the sampler's (max |diff|)",
                "  plait threads logprobs runs.jsonl --model smollm2-135m --tokenizer smollm2\n"
                "  plait threads logprobs runs.jsonl --model ./ckpt --block-tokens 16 --json")  # fmt: skip
    p.add_argument("file", help="trajectories (.jsonl), e.g. from `plait threads run`; each must "
                   "pass `threads validate`")  # fmt: skip
    p.add_argument("--model", required=True,
                   help="the policy: bundled name, HF-format directory, .gguf file or hub id")  # fmt: skip
    p.add_argument("--block-tokens", type=int, default=64,
                   help="the sampling engine's --block-tokens (plait serve: 64)")  # fmt: skip
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="the sampling server's weights (its --dtype): " + DTYPE_HELP,
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--backend", choices=["chunked", "dense", "flex"], default="chunked",
                   help="attention of the packed training forward")  # fmt: skip
    p.add_argument("--tokenizer", default=None,
                   help="char | smollm2 | a local HF tokenizer dir (default: the model's)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_command("logprobs", "cmd_logprobs"))


def _run(sub: Any) -> None:
    p = _parser(sub, "run", "run the orchestrator against an OpenAI-compatible server",
                "  plait threads run --base-url http://127.0.0.1:8000/v1 --prompt 'Q' "
                "--out runs.jsonl\n  plait threads run --base-url URL --prompts qs.txt --out "
                "runs.jsonl   # rerun: resumes\n  plait threads run --base-url URL --prompts qs.txt "
                "--out runs.jsonl --overwrite")  # fmt: skip
    p.add_argument("--base-url", required=True, help="the API root, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", default="default", help="the served model name")
    p.add_argument("--prompt-mode", choices=["ids", "text"], default="ids",
                   help="ids: vLLM/SGLang; text: llama.cpp and text-only servers")  # fmt: skip
    p.add_argument("--prompt", action="append", default=[], help="prompt text (repeatable)")
    p.add_argument("--prompts", help="file with one prompt per line ('-' = stdin)")
    p.add_argument("--out", required=True,
                   help="trajectories (.jsonl), appended as each finishes; a rerun skips the "
                   "prompts already there")  # fmt: skip
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start --out afresh (needed when it was made with other settings)",
    )
    p.add_argument("--max-total-tokens", type=int, default=40960, help="response tokens per run")
    p.add_argument("--max-thread-tokens", type=int, default=8192, help="tokens per thread")
    p.add_argument("--max-threads", type=int, default=16, help="threads per block")
    p.add_argument("--max-blocks", type=int, default=32, help="forks per run, then sequential")
    p.add_argument("--temperature", type=finite_float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=finite_float, default=1.0, help="nucleus sampling mass")
    p.add_argument("--seed", type=int, default=None, help="sampling seed")
    p.add_argument("--timeout", type=finite_float, default=600.0, help="seconds per HTTP request")
    _common(p)
    p.set_defaults(func=_command("run", "cmd_run"))
