"""The HTTP app: OpenAI-compatible routes over one `EngineLoop`.

    GET  /v1/models              the served model
    POST /v1/completions         prompt text / ids / a list of either; stream, n, stop, logprobs
    POST /v1/chat/completions    messages through the chat template; + `hogwild` / `threads`
    GET  /health                 200 while the engine thread runs and the server is not draining
    GET  /metrics                Prometheus text (plait.serve.metrics)

Errors are OpenAI-shaped (`plait.serve.protocol.APIError`): 400 bad input, 404 unknown model or
route, 405 a wrong method, 413 a body or request larger than the server can ever take, 415 a
body that is not JSON, 429 too many waiting requests, 500 a request that failed inside the
engine (that request only: the others go on), 503 shutting down. A client that disconnects
(while sending its body, mid-stream or while waiting for a whole response) has its request
cancelled, which frees its KV at once, and nothing is logged. Bodies are checked before parsing
(`plait.serve.bodies`: media type, nesting depth); large ones are parsed, and prompts tokenised,
on worker threads (`off_loop`), so /health answers while a 4 MB prompt is read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from plait.runtime.engine import CapacityError, EngineRequest, SampleOutput
from plait.serve import chat, completions
from plait.serve.bodies import check_content_type, off_loop, parse_json
from plait.serve.loop import EngineLoop
from plait.serve.metrics import render_metrics
from plait.serve.protocol import APIError, GenParams, Limits
from plait.serve.responses import sse

log = logging.getLogger("plait.serve")


@dataclass(slots=True, kw_only=True)
class ServeState:
    """Everything the handlers share."""

    loaded: Any  # LoadedModel (model, tokenizer, eos ids, chat template)
    loop: EngineLoop
    model_name: str
    limits: Limits
    max_waiting: int = 256
    max_body_bytes: int = 4 << 20
    draining: bool = False
    responses: dict[int, int] = field(default_factory=dict)  # HTTP status -> count
    thread_format: Any = None  # the threads extension's ThreadFormat (built on first use)

    def engine_request(self, prompt: list[int], budget: int, p: GenParams) -> EngineRequest:
        sampling = p.sampling
        if sampling.seed is None and not sampling.greedy:  # unseeded: a fresh random stream
            sampling = type(sampling)(
                temperature=sampling.temperature, top_k=sampling.top_k, top_p=sampling.top_p,
                seed=random.getrandbits(31),
            )  # fmt: skip
        return EngineRequest(
            prompt=prompt, max_tokens=budget, sampling=sampling, n=p.n, stop=p.stop,
            stop_token_ids=p.stop_token_ids, ignore_eos=p.ignore_eos,
            include_stop_str=p.include_stop_str, logprobs=p.logprobs,
        )  # fmt: skip


async def read_body(request: Request, state: ServeState) -> dict[str, Any]:
    """The JSON object of a POST, after the server-level checks (draining, size, model, queue)."""
    if state.draining or not state.loop.alive:
        raise APIError(
            503, "the server is shutting down; retry on another instance", "server_error"
        )
    check_content_type(request.headers.get("content-type"))
    raw = await request.body()
    if len(raw) > state.max_body_bytes:
        raise APIError(413, f"the request body has {len(raw)} bytes; the limit is "
                       f"{state.max_body_bytes}; send a shorter prompt")  # fmt: skip
    body = await off_loop(len(raw), parse_json, raw)
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object with 'model' and the request fields")
    model = body.get("model")
    if model != state.model_name:
        raise APIError(
            404, f"the model {model!r:.80} does not exist; this server serves {state.model_name!r} "
            "(GET /v1/models)", param="model", code="model_not_found",
        )  # fmt: skip
    if state.loop.snapshot.waiting >= state.max_waiting:
        raise APIError(429, f"{state.max_waiting} requests are already waiting; retry shortly",
                       "rate_limit_error")  # fmt: skip
    return body


async def merged(
    state: ServeState, requests: list[EngineRequest]
) -> AsyncIterator[tuple[int, SampleOutput]]:
    """Outputs of several requests as they come, tagged with the request's index; leaving
    early cancels them all. Raises APIError if the engine refuses one."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(i: int, req: EngineRequest) -> None:
        try:
            async for out in state.loop.stream(req):
                await queue.put((i, out))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer
            await queue.put(exc)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    live = len(tasks)
    try:
        while live:
            item = await queue.get()
            if item is None:
                live -= 1
            elif isinstance(item, BaseException):
                raise _api_error(item)
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _api_error(exc: BaseException) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, CapacityError):
        return APIError(413, str(exc))
    if isinstance(exc, ValueError):
        return APIError(400, str(exc))
    return APIError(500, f"internal error: {exc}", "server_error")


async def until_disconnect(request: Request, work: Awaitable[Any]) -> Any:
    """Await `work`; cancel it if the client goes away first (then returns None)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return None


def error_response(exc: APIError, state: ServeState) -> JSONResponse:
    state.responses[exc.status] = state.responses.get(exc.status, 0) + 1
    return JSONResponse(exc.body(), status_code=exc.status)


async def start_stream(events: AsyncIterator[str]) -> StreamingResponse:
    """An SSE response of `events` (then `[DONE]`). The first event is awaited before answering,
    so a refused request gets its error status, not a 200 stream; an error after that becomes
    an error event. Leaving the stream early (client gone) cancels the engine requests."""
    first = await events.__anext__()

    async def rest() -> AsyncIterator[str]:
        yield first
        try:
            async for e in events:
                yield e
        except APIError as exc:
            yield sse(exc.body())
        yield sse("[DONE]")

    return StreamingResponse(rest(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip


def create_app(state: ServeState) -> Starlette:
    """The Starlette app (the engine loop must be started by the caller)."""

    def route(fn: Callable[[Request, ServeState], Awaitable[Response]]) -> Callable[..., Any]:
        async def handler(request: Request) -> Response:
            try:
                resp = await fn(request, state)
            except APIError as exc:
                return error_response(exc, state)
            except ClientDisconnect:  # gone while sending its body: nobody reads an answer
                return Response(status_code=499)
            except Exception as exc:  # noqa: BLE001 - this request's error; the server goes on
                err = _api_error(exc)
                if err.status >= 500:
                    log.error("request failed: %s", err.message, exc_info=exc)
                return error_response(err, state)
            state.responses[resp.status_code] = state.responses.get(resp.status_code, 0) + 1
            return resp

        return handler

    async def models(request: Request, st: ServeState) -> Response:
        card = {"id": st.model_name, "object": "model", "created": 0, "owned_by": "plait",
                "max_model_len": st.limits.context}  # fmt: skip
        return JSONResponse({"object": "list", "data": [card]})

    async def health(request: Request, st: ServeState) -> Response:
        ok = st.loop.alive and not st.draining
        return JSONResponse(
            {"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503
        )

    async def metrics(request: Request, st: ServeState) -> Response:
        return PlainTextResponse(render_metrics(st), media_type="text/plain; version=0.0.4")

    async def not_found(request: Request, exc: Exception) -> Response:
        msg = f"no route {request.method} {request.url.path}; see /v1/models, /v1/completions, /v1/chat/completions"
        return error_response(APIError(404, msg, code="not_found"), state)

    async def wrong_method(request: Request, exc: Exception) -> Response:
        allow = getattr(exc, "headers", None) or {}
        msg = (f"{request.method} is not allowed on {request.url.path}; use "
               f"{allow.get('Allow', 'another method')}")  # fmt: skip
        resp = error_response(APIError(405, msg, code="method_not_allowed"), state)
        resp.headers.update(allow)
        return resp

    routes = [
        Route("/v1/models", route(models), methods=["GET"]),
        Route("/health", route(health), methods=["GET"]),
        Route("/metrics", route(metrics), methods=["GET"]),
        Route("/v1/completions", route(completions.handle), methods=["POST"]),
        Route("/v1/chat/completions", route(chat.handle), methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: wrong_method})
