"""The `plait` command: one argparse parser, subcommands registered by each subsystem.

Each subsystem module `plait.<sub>.cli` exposes `register(subparsers)`; it adds its parsers and
sets `func` (taking the parsed args, returning an exit code). Imports are lazy so that
`plait --version` and `plait sgc ...` do not import torch.

One error boundary: a user error (a `PlaitError`, ValueError, OSError, a JSON or decoding error,
an HTTP client error) prints `plait <command>: error: <message>` and exits 2; `PLAIT_DEBUG=1`
shows the traceback instead. A closed stdout pipe (`plait ... | head`) exits quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from plait import __version__
from plait.errors import PlaitError

# Modules that register subcommands, in help order. A missing module is skipped, so a subsystem
# can land independently of the others.
_SUBCOMMAND_MODULES = (
    "plait.runtime.cli",
    "plait.hogwild.cli",
    "plait.hogwild.demo",
    "plait.threads.cli",
    "plait.sgc.cli",
    "plait.eval.cli",
    "plait.serve.cli",
)

# Exception types (by module prefix) from client libraries that mean "the server or network
# failed", not "plait has a bug".
_CLIENT_ERROR_MODULES = ("httpx", "httpcore", "openai", "urllib3", "requests")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plait",
        description="Parallel LLM reasoning (Hogwild!, ThreadWeaver) and sequential gradient coding.",
    )
    parser.add_argument("--version", action="version", version=f"plait {__version__}")
    parser.add_argument(
        "--no-batch-invariant",
        action="store_true",
        help="faster prefill and large batches, but a request's bits then depend on what shares "
        "its steps (sets PLAIT_BATCH_INVARIANT=0; README: Same request, same tokens)",
    )
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


def is_user_error(exc: BaseException) -> bool:
    """Whether `exc` is the caller's problem (one line) rather than a bug (a traceback)."""
    if isinstance(exc, (PlaitError, ValueError, OSError)):
        return True
    module = type(exc).__module__ or ""
    return module.split(".")[0] in _CLIENT_ERROR_MODULES


def command_name(parser: argparse.ArgumentParser, argv: list[str]) -> str:
    """`plait threads validate` for argv ['threads', 'validate', 'x.jsonl', ...]."""
    words = [parser.prog]
    current: argparse.ArgumentParser | None = parser
    for token in argv:
        if current is None or token.startswith("-"):
            break
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        words.append(token)
        current = subs[0].choices[token]
    return " ".join(words)


def error_message(exc: BaseException) -> str:
    """One line for a user error."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return "; ".join(lines) if lines else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "no_batch_invariant", False):
        switch_off_batch_invariance()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except Exception as exc:  # noqa: BLE001 - the one error boundary
        if not is_user_error(exc):
            raise
        if os.environ.get("PLAIT_DEBUG"):
            traceback.print_exc()
        print(f"{command_name(parser, argv)}: error: {error_message(exc)}", file=sys.stderr)
        return 2


def switch_off_batch_invariance() -> None:
    """`--no-batch-invariant`: through the environment (child processes, Ray workers started
    here, and torch-free until the kernels load) and the live switch if they already did."""
    os.environ["PLAIT_BATCH_INVARIANT"] = "0"
    kernels = sys.modules.get("plait.runtime.kernels")
    if kernels is not None:
        kernels.set_batch_invariant(False)


def _quiet_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so the interpreter's final flush is silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
