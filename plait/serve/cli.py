"""`plait serve`: an OpenAI-compatible HTTP server for one model (plait.serve)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from plait.arguments import DTYPE_CHOICES, DTYPE_HELP, HelpFormatter
from plait.serve.cluster.cli import RAY_EPILOG, add_arguments

SERVE_EPILOG = """examples:
  plait serve                                       # Qwen2.5-0.5B on http://127.0.0.1:8000/v1
  plait serve --model smollm2-135m --port 8001 --served-model-name tiny
  plait serve --kv-budget-tokens 65536 --max-rows 32 --graceful-s 10
  curl -s http://127.0.0.1:8000/v1/models
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over an OpenAI-compatible HTTP API (/v1/completions, ...)",
        formatter_class=HelpFormatter,
        epilog=SERVE_EPILOG + RAY_EPILOG,
    )
    p.add_argument(
        "--model",
        default="qwen2.5-0.5b",
        help="bundled name, HF-format directory, .gguf file or hub id",
    )
    p.add_argument(
        "--served-model-name", default=None, help="the name clients send (default: --model)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPE_CHOICES,
        help="weights and KV: " + DTYPE_HELP + "; here auto means bf16 when --max-rows > 2 "
        "(faster for batches; gguf keeps the blocks packed)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--kv-budget-tokens", type=int, default=32768,
                   help="KV slots for all requests and the prefix cache")  # fmt: skip
    p.add_argument("--max-rows", type=int, default=64, help="sequences decoding at once")
    p.add_argument("--step-tokens", type=int, default=512, help="tokens per batched step")
    p.add_argument("--block-tokens", type=int, default=64, help="prefix-cache block size")
    p.add_argument("--max-n", type=int, default=16, help="largest n a request may ask for")
    p.add_argument("--max-waiting", type=int, default=256, help="waiting requests before 429")
    p.add_argument("--graceful-s", type=float, default=30.0, help="drain time on SIGTERM")
    add_arguments(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from plait.errors import UsageError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"plait serve needs {exc.name}; install it with pip install -e '.[serve]'"
        ) from None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be in 0..65535, got {args.port}")
    _check_port(args.host, args.port)  # before the model loads
    if args.ray:
        from plait.serve.cluster.cli import run as run_cluster

        return run_cluster(args)
    from plait.runtime.engine import EngineConfig
    from plait.runtime.loading.loader import load_model
    from plait.serve.server import build_state, run

    config = EngineConfig(
        kv_budget_tokens=args.kv_budget_tokens, max_rows=args.max_rows,
        step_tokens=args.step_tokens, block_tokens=args.block_tokens,
    )  # fmt: skip
    loaded = load_model(args.model, dtype=args.dtype, device=args.device)
    state = build_state(loaded, config, args.served_model_name or args.model, args.max_n,
                        args.max_waiting)  # fmt: skip
    print(f"plait serve: {state.model_name} on http://{args.host}:{args.port}/v1 "
          f"(KV budget {config.kv_budget_tokens} tokens, {config.max_rows} rows)",
          file=sys.stderr, flush=True)  # fmt: skip
    run(state, args.host, args.port, args.graceful_s)
    return 0


def _check_port(host: str, port: int) -> None:
    import socket

    from plait.errors import UsageError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port} ({exc.strerror}); pick a free --port or --host"
        ) from None
