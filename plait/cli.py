"""The `plait` command: one argparse parser, subcommands registered by each subsystem.

Each subsystem module `plait.<sub>.cli` exposes `register(subparsers)`; it adds its parsers and
sets `func` (taking the parsed args, returning an exit code). Imports are lazy so that
`plait --version` and `plait sgc ...` do not import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from plait import __version__

# Modules that register subcommands, in help order. A missing module is skipped, so a subsystem
# can land independently of the others.
_SUBCOMMAND_MODULES = (
    "plait.runtime.cli",
    "plait.hogwild.cli",
    "plait.threads.cli",
    "plait.sgc.cli",
    "plait.eval.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plait",
        description="Parallel LLM reasoning (Hogwild!, ThreadWeaver) and sequential gradient coding.",
    )
    parser.add_argument("--version", action="version", version=f"plait {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
