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
cancelled, which frees its KV at once, and nothing is logged.

This module only wires routes; what the handlers share (state, body checks, streaming) is in
plait.serve.state, below them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from plait.serve import chat, completions
from plait.serve.metrics import render_metrics
from plait.serve.protocol import APIError
from plait.serve.state import ServeState, api_error, error_response

log = logging.getLogger("plait.serve")


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
                err = api_error(exc)
                if err.status >= 500:
                    log.error("request failed: %s", err.message, exc_info=exc)
                return error_response(err, state)
            state.count(resp.status_code)
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
