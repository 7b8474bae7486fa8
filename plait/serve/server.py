"""Build a server for a loaded model and run it with uvicorn (graceful SIGTERM).

`build_state` wires the model into an `Engine`, its `EngineLoop` thread and the handlers' shared
state; `run` serves until SIGTERM/SIGINT: the listening socket closes, new requests on open
connections get 503, requests in flight finish (up to `graceful_s`), then the engine thread stops.
`start_in_thread` serves from a background thread (tests, notebooks).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Protocol

import uvicorn

from plait.runtime.engine import Engine, EngineConfig
from plait.serve.app import create_app
from plait.serve.loop import EngineLoop
from plait.serve.protocol import Limits
from plait.serve.state import ServeState


def build_state(
    loaded: Any,
    config: EngineConfig | None = None,
    model_name: str | None = None,
    max_n: int = 16,
    max_waiting: int = 256,
) -> ServeState:
    """An engine loop (started) and the handlers' state for `loaded` (a `LoadedModel`)."""
    engine = Engine(loaded.model, loaded.tokenizer, config, eos_token_ids=loaded.eos_token_ids)
    loop = EngineLoop(engine)
    loop.start()
    limits = Limits(context=loaded.config.max_position, vocab=loaded.config.vocab_size, max_n=max_n)
    return ServeState(
        loaded=loaded, loop=loop, model_name=model_name or loaded.name, limits=limits,
        max_waiting=max_waiting,
    )  # fmt: skip


class Draining(Protocol):
    draining: bool


class DrainingServer(uvicorn.Server):
    """uvicorn's server that marks its state draining as soon as a signal arrives (plait serve's
    state, or the Ray ingress's)."""

    def __init__(self, config: uvicorn.Config, state: Draining) -> None:
        super().__init__(config)
        self.state = state

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.state.draining = True
        super().handle_exit(sig, frame)
        # uvicorn re-raises a captured signal once it has shut down, which would kill the
        # process before the engine thread stops; the drain is the answer to the signal
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def http_server(
    app: Any, state: Draining, host: str, port: int, graceful_s: float = 30.0
) -> DrainingServer:
    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning",
        timeout_graceful_shutdown=int(graceful_s), timeout_keep_alive=30,
    )  # fmt: skip
    return DrainingServer(config, state)


def make_server(
    state: ServeState, host: str, port: int, graceful_s: float = 30.0
) -> DrainingServer:
    return http_server(create_app(state), state, host, port, graceful_s)


def run(state: ServeState, host: str, port: int, graceful_s: float = 30.0) -> None:
    """Serve until SIGTERM/SIGINT, then drain and stop the engine thread."""
    server = make_server(state, host, port, graceful_s)
    try:
        server.run()
    finally:
        state.draining = True
        state.loop.stop(timeout=graceful_s)


def free_port(host: str) -> int:
    """A port that was free on `host` a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_in_thread(server: uvicorn.Server, host: str, port: int, name: str) -> str:
    """Run `server` in a daemon thread and wait until it listens; returns its base URL."""
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"{name} did not start on {host}:{port}")
        time.sleep(0.02)
    return f"http://{host}:{port}/v1"


def start_in_thread(
    state: ServeState, host: str = "127.0.0.1", port: int = 0
) -> tuple[DrainingServer, str]:
    """Serve from a daemon thread; returns the server (set `should_exit` to stop) and its base
    URL (`http://host:port/v1`). Port 0 picks a free port."""
    port = port or free_port(host)
    server = make_server(state, host, port)
    return server, serve_in_thread(server, host, port, "plait-http")
