"""One engine replica: the single-process server's state and app, driven in-process by Serve.

`EngineReplica` is the deployment's class (plait.serve.cluster.deploy wraps it with
`serve.deployment`). It loads the model and builds the very `ServeState`, `EngineLoop` and
Starlette app that `plait serve` runs (plait.serve.server.build_state, plait.serve.app), so
validation, errors, response shapes and the hogwild / threads extensions are the same code.
`handle` runs one HTTP request through that app by calling it as an ASGI application (no socket)
and streams back the response: first `{"status", "headers", "replica"}`, then body chunks
(the parts that piled up while the caller read the last one are sent as one: each item is a
Ray message).
Leaving the stream early (the ingress cancelled it: client gone) tells the app the client
disconnected and cancels it, which cancels the engine request and frees its KV.

`record_routing_stats` feeds the router's view of this replica (queue length, prefix-cache hit
rate), `check_health` fails once the engine thread died (Serve then restarts the replica), and
Serve's graceful shutdown (in-flight requests finish first) ends in `__del__`, which stops the
engine thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, kw_only=True)
class ReplicaSpec:
    """What each replica loads and how it serves (pickled to every replica)."""

    model: str
    served_name: str
    dtype: str = "bf16"
    device: str = "cpu"
    engine: dict[str, int] = field(default_factory=dict)  # EngineConfig fields
    max_n: int = 16
    max_waiting: int = 256


async def asgi_call(
    app: Any, method: str, path: str, body: bytes, content_type: str | None = "application/json"
) -> AsyncIterator[dict[str, Any] | bytes]:
    """Run one request through an ASGI app: yields the response head (status, headers), then
    body chunks. Closing the iterator early disconnects the client and cancels the app."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await queue.put(message)

    headers = [(b"content-length", str(len(body)).encode())]
    if content_type is not None:
        headers.append((b"content-type", content_type.encode("latin-1")))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "client": ("ray-ingress", 0),
        "server": ("plait-replica", 0),
        "headers": headers,
    }  # fmt: skip
    task = asyncio.create_task(app(scope, receive, send))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while True:
            message = await queue.get()
            if message is None:
                task.result()  # the app ended without finishing its response: raise its error
                raise RuntimeError(f"the app ended without a response to {method} {path}")
            if message["type"] == "http.response.start":
                headers = [(k.decode(), v.decode()) for k, v in message.get("headers", [])]
                yield {"status": message["status"], "headers": headers}
            elif message["type"] == "http.response.body":
                chunk, more = bytearray(message.get("body", b"")), message.get("more_body", False)
                while more and _ready_body(queue):  # what piled up while the caller was away:
                    message = queue.get_nowait()  # one item (each costs a Ray message)
                    chunk += message.get("body", b"")
                    more = message.get("more_body", False)
                if chunk:
                    yield bytes(chunk)
                if not more:
                    return
    finally:
        gone.set()
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _ready_body(queue: asyncio.Queue[Any]) -> bool:
    """Whether the next queued message is a body part (no waiting)."""
    q: Any = getattr(queue, "_queue", None)  # asyncio.Queue's deque: peek without taking
    return bool(q) and isinstance(q[0], dict) and q[0].get("type") == "http.response.body"


class EngineReplica:
    """The Ray Serve deployment class (see the module docstring)."""

    def __init__(self, spec: ReplicaSpec) -> None:
        from plait.runtime.engine import EngineConfig
        from plait.runtime.loading.loader import load_model
        from plait.serve.app import create_app
        from plait.serve.server import build_state

        loaded = load_model(spec.model, dtype=spec.dtype, device=spec.device)
        config = EngineConfig(**spec.engine)
        self.state = build_state(loaded, config, spec.served_name, spec.max_n, spec.max_waiting)
        self.app = create_app(self.state)
        self.name = _replica_name()

    async def describe(self) -> dict[str, Any]:
        """What the ingress needs: the model's name and context, the tokenizer (for routing
        keys), the engine's settings, this replica's name."""
        st = self.state
        return {
            "model": st.model_name, "context": st.limits.context, "replica": self.name,
            "tokenizer": st.loaded.tokenizer, "kv_budget_tokens": st.loop.engine.config.kv_budget_tokens,
            "block_tokens": st.loop.engine.config.block_tokens,
        }  # fmt: skip

    async def handle(
        self, method: str, path: str, body: bytes, route: list[int] | None = None,
        content_type: str | None = "application/json",
    ) -> AsyncIterator[dict[str, Any] | bytes]:  # fmt: skip
        """One HTTP request through the app (`route` is the router's, unused here)."""
        first = True
        async for item in asgi_call(self.app, method, path, body, content_type):
            if first and isinstance(item, dict):
                item["replica"] = self.name
                first = False
            yield item

    def record_routing_stats(self) -> dict[str, float]:
        snap = self.state.loop.snapshot
        s = snap.stats
        prompt = float(s.get("prompt_tokens", 0))
        computed = float(s.get("computed_prompt_tokens", 0))
        return {
            "running": float(snap.running), "waiting": float(snap.waiting),
            "queue_length": float(snap.running + snap.waiting),
            "prefix_cache_hit_rate": float(snap.cache_hit_rate),
            "prompt_tokens": prompt, "computed_prompt_tokens": computed,
            "kv_cache_tokens": float(snap.kv_cache_tokens),
            "finished_requests": float(s.get("finished_requests", 0)),
        }  # fmt: skip

    def check_health(self) -> None:
        if not self.state.loop.alive:
            raise RuntimeError(f"the engine thread of replica {self.name} stopped: "
                               f"{self.state.loop.error}")  # fmt: skip

    def __del__(self) -> None:
        state = getattr(self, "state", None)
        if state is not None:
            state.draining = True
            state.loop.stop(timeout=30)


def _replica_name() -> str:
    try:
        from ray import serve  # lazily: a replica runs inside Ray anyway

        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # noqa: BLE001 - outside Serve (tests of the class itself)
        return "local"
