"""The engine's own thread, and the asyncio side that talks to it.

The HTTP handlers run on the event loop; the engine runs on one thread (torch releases the GIL
while it computes, so the loop stays responsive). Handlers post commands (add, cancel) to an
inbox; the engine thread applies them between steps, runs `Engine.step` while there is work,
and delivers each request's outputs to that request's asyncio queue (one thread-safe call per
request per step). Leaving `stream()` early (client gone, handler cancelled) cancels the request
in the engine, which frees its segments at once. After every step the thread publishes a
snapshot of the engine's counters for /metrics and /health.

Isolation: a request the engine fails (an error output, `plait.runtime.engine.isolation`) raises
`RequestError` in its own `stream()` only; `Engine.add` refusing a request (any exception) fails
that request's `stream()`; an exception escaping `Engine.step` (or the delivery) fails the
requests in the engine at that moment, and the thread goes on serving the next ones.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from plait.runtime.engine import (
    Engine,
    EngineRequest,
    GroupOutput,
    SampleOutput,
    StreamGroup,
    raise_for_error,
)
from plait.runtime.engine.scheduler import GroupState

log = logging.getLogger("plait.serve")

Output = SampleOutput | GroupOutput


class ShuttingDown(RuntimeError):
    """A request posted after `stop()` began (the server answers 503)."""


@dataclass(slots=True)
class _Sink:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Any]
    admitted: asyncio.Future[str]


@dataclass(slots=True)
class EngineMetrics:
    """Engine counters, as of the end of the last step (read by /metrics)."""

    running: int = 0
    waiting: int = 0
    kv_request_tokens: int = 0
    kv_cache_tokens: int = 0
    kv_budget_tokens: int = 0
    kv_held_tokens: int = 0  # slots of every live segment (requests, groups, prefix cache)
    kv_block_tokens: int = 1
    cache_hit_rate: float = 0.0
    stats: dict[str, float] = field(default_factory=dict)


class EngineLoop:
    """Runs an `Engine` on a thread (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._cond = threading.Condition()
        self._inbox: list[tuple[str, Any, Any]] = []
        self._sinks: dict[str, _Sink] = {}
        self._stopping = False
        self.snapshot = EngineMetrics(kv_budget_tokens=engine.config.kv_budget_tokens)
        self._thread = threading.Thread(target=self._run, name="plait-engine", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._publish()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish what is running (up to `timeout` seconds), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # ------------------------------------------------------------------ asyncio side

    async def stream(
        self, request: EngineRequest | StreamGroup, rid: str = ""
    ) -> AsyncIterator[Output]:
        """Queue a request; yield its outputs until it finishes. Raises ValueError if the
        engine refuses it. Leaving early cancels it."""
        loop = asyncio.get_running_loop()
        sink = _Sink(loop, asyncio.Queue(), loop.create_future())
        self._post("add", (request, rid), sink)
        request_id = await sink.admitted  # raises what Engine.add raised
        n = request.n if isinstance(request, EngineRequest) else 1
        done = 0
        try:
            while done < n:
                out = await sink.queue.get()
                if isinstance(out, BaseException):
                    raise out
                raise_for_error(out)  # this request failed in the engine (the others go on)
                if out.finished:
                    done += 1
                yield out
        finally:
            if done < n:
                self._post("cancel", request_id, None)

    def _post(self, kind: str, payload: Any, sink: _Sink | None) -> None:
        with self._cond:
            if self._stopping and kind == "add":
                raise ShuttingDown("the server is shutting down; retry on another instance")
            self._inbox.append((kind, payload, sink))
            self._cond.notify()

    # ------------------------------------------------------------------ engine thread

    def _run(self) -> None:
        engine = self.engine
        while True:
            with self._cond:
                while not self._inbox and not engine.has_work and not self._stopping:
                    self._cond.wait()
                commands, self._inbox = self._inbox, []
                stopping = self._stopping
            try:
                for kind, payload, sink in commands:
                    self._apply(kind, payload, sink)
                if not engine.has_work:
                    self._publish()
                    if stopping:
                        return
                    continue
                self._deliver(engine.step())
                self._publish()
            except Exception as exc:  # noqa: BLE001 - fail what is in the engine, keep serving
                log.error("the engine step failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
                self._fail_all(exc)

    def _apply(self, kind: str, payload: Any, sink: _Sink | None) -> None:
        engine = self.engine
        if kind == "cancel":
            engine.cancel(payload)
            self._sinks.pop(payload, None)
            return
        assert sink is not None
        request, rid = payload
        try:
            if isinstance(request, EngineRequest):
                rid = engine.add(request)
            else:
                rid = engine.add_group(request, rid)
        except Exception as exc:  # noqa: BLE001 - refused: this request's stream() raises it
            sink.loop.call_soon_threadsafe(_resolve, sink.admitted, None, exc)
            return
        self._sinks[rid] = sink
        sink.loop.call_soon_threadsafe(_resolve, sink.admitted, rid, None)

    def _deliver(self, outputs: list[Output]) -> None:
        by_sink: dict[str, list[Output]] = {}
        for out in outputs:
            by_sink.setdefault(out.request_id, []).append(out)
        for rid, outs in by_sink.items():
            sink = self._sinks.get(rid)
            if sink is None:
                continue
            if not self.engine.active(rid):
                self._sinks.pop(rid, None)
            sink.loop.call_soon_threadsafe(_put_all, sink.queue, outs)

    def _fail_all(self, exc: Exception) -> None:
        """Fail every request in the engine (their streams raise); the engine is left idle."""
        self.error = exc
        sched = self.engine.scheduler
        for st in [*sched.running, *sched.waiting]:
            rid = st.request_id if isinstance(st, GroupState) else st.request.request_id
            self.engine.cancel(rid)
            sink = self._sinks.pop(rid, None)
            if sink is not None:
                err = RuntimeError(f"engine failed: {type(exc).__name__}: {exc}")
                sink.loop.call_soon_threadsafe(sink.queue.put_nowait, err)
        for sink in self._sinks.values():  # finished in the step that failed: not delivered
            sink.loop.call_soon_threadsafe(
                sink.queue.put_nowait, RuntimeError(f"engine failed: {exc}")
            )
        self._sinks.clear()

    def _publish(self) -> None:
        e = self.engine
        s = e.stats
        self.snapshot = EngineMetrics(
            running=e.num_running(), waiting=e.num_waiting(),
            kv_request_tokens=e.request_kv_tokens(), kv_cache_tokens=e.cache.total_tokens(),
            kv_budget_tokens=e.config.kv_budget_tokens, cache_hit_rate=e.cache.hit_rate(),
            kv_held_tokens=e.store.held, kv_block_tokens=e.config.block_tokens,
            stats={
                "steps": s.steps, "step_seconds": s.step_seconds, "last_step_seconds": s.last_step_seconds,
                "generated_tokens": s.generated_tokens, "prompt_tokens": s.prompt_tokens,
                "computed_prompt_tokens": s.computed_prompt_tokens,
                "finished_requests": s.finished_requests, "cancelled_requests": s.cancelled_requests,
                "failed_requests": s.failed_requests,
                "preemptions": s.preemptions, "recomputed_tokens": s.recomputed_tokens,
                "peak_running": s.peak_running,
                "updated": time.time(),
            },
        )  # fmt: skip


def _resolve(fut: asyncio.Future[str], value: str | None, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value or "")


def _put_all(queue: asyncio.Queue[Any], items: list[Output]) -> None:
    for item in items:
        queue.put_nowait(item)
