"""The HTTP front of `plait serve --ray`: each request goes whole to one engine replica.

The ingress parses just enough of a body to route it: the prompt's token ids (chat messages
through the chat template, completion text through the tokenizer; a list of prompts routes by
its first), cut into the router's block keys (`prefix_index.chain`) and sent as the `route`
keyword of the replica call, which the router reads (plait.serve.cluster.router). Everything
else (validation, OpenAI errors, response shapes, the hogwild and threads extensions) happens in
the replica, in the same app as single-process `plait serve`: a Hogwild problem or a block of
threads lands on one replica with its whole context.

Faults: a replica that dies before anything reached the client (a whole response, or a stream
before its first chunk) is retried on another live replica (up to `max_retries` times); one that
dies mid-stream ends the stream with an OpenAI error event (`replica_died`) and `[DONE]`; a
replica silent for `timeout_s` ends the request with an error too, so nothing hangs. A client
that goes away cancels its replica call (which cancels the engine request).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from plait.serve.cluster.prefix_index import chain
from plait.serve.protocol import APIError, chat_messages
from plait.serve.responses import sse
from plait.serve.state import until_disconnect


@dataclass(slots=True, kw_only=True)
class IngressState:
    """What the ingress handlers share."""

    handle: Any  # the engine deployment's DeploymentHandle
    deployment: str  # its name (the router registers under it)
    model_name: str
    context: int
    tokenizer: Any
    block_tokens: int = 16  # the router's key size
    max_body_bytes: int = 4 << 20
    max_retries: int = 3
    timeout_s: float = 600.0  # a replica silent this long fails the request
    draining: bool = False
    responses: dict[int, int] = field(default_factory=dict)
    retries: int = 0
    replica_failures: int = 0


class ReplicaLost(Exception):
    """The replica serving a request died, or fell silent past the timeout."""


def prompt_tokens(state: IngressState, path: str, body: Any) -> list[int]:
    """The prompt's ids for routing ([] when the body is not one the replica will accept)."""
    from plait.runtime.loading.tokenizer import chat_prompt_ids

    if not isinstance(body, dict):
        return []
    try:
        if path.endswith("/chat/completions"):
            return list(chat_prompt_ids(state.tokenizer, chat_messages(body)))
        p = body.get("prompt")
        if isinstance(p, list) and p and isinstance(p[0], str | list):
            p = p[0]
        if isinstance(p, str):
            return list(state.tokenizer.encode(p, add_special_tokens=False))
        if isinstance(p, list) and all(isinstance(t, int) for t in p):
            return p
    except Exception:  # noqa: BLE001 - the replica answers the bad body with its error
        return []
    return []


def _lost(exc: BaseException) -> bool:
    """Whether a replica call failed because its replica died (not because of the request)."""
    from ray import exceptions as rex  # lazily: only a Ray deployment gets here

    return isinstance(exc, rex.RayActorError | rex.ActorUnavailableError | ReplicaLost)


async def _next(gen: Any, timeout_s: float) -> Any:
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout_s)
    except asyncio.TimeoutError:
        gen.cancel()
        raise ReplicaLost(f"the replica sent nothing for {timeout_s:g} s") from None


async def _open(
    state: IngressState, request: Request, raw: bytes, keys: list[int]
) -> tuple[Any, dict[str, Any], list[bytes]]:
    """Call a replica; return (generator, head, chunks so far). For a stream, the chunks so far
    are its first; otherwise the whole body. Retries on a lost replica."""
    attempt = 0
    while True:
        gen = state.handle.options(stream=True).handle.remote(
            request.method, request.url.path, raw, route=keys,
            content_type=request.headers.get("content-type"),
        )  # fmt: skip
        try:
            head = await _next(gen, state.timeout_s)
            stream = dict(head["headers"]).get("content-type", "").startswith("text/event-stream")
            chunks: list[bytes] = []
            while True:
                try:
                    chunks.append(await _next(gen, state.timeout_s))
                except StopAsyncIteration:
                    break
                if stream:
                    break
            return gen, head, chunks
        except asyncio.CancelledError:
            gen.cancel()
            raise
        except Exception as exc:
            if not _lost(exc):
                raise
            state.replica_failures += 1
            attempt += 1
            if attempt > state.max_retries:
                raise APIError(503, f"the replicas serving this request died {attempt} times "
                               f"(last: {_short(exc)}); retry shortly", "server_error",
                               code="replica_died") from None  # fmt: skip
            state.retries += 1


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


async def forward(request: Request, state: IngressState) -> Response:
    """Any request but the ingress's own routes: to a replica (routed by its prompt), and the
    replica's response relayed (404, 405, 415 included: the replica's app decides)."""
    if state.draining:
        raise APIError(
            503, "the server is shutting down; retry on another instance", "server_error"
        )
    raw = await request.body()
    if len(raw) > state.max_body_bytes:
        raise APIError(413, f"the request body has {len(raw)} bytes; the limit is "
                       f"{state.max_body_bytes}; send a shorter prompt")  # fmt: skip
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, RecursionError):  # not JSON, too deep: the replica answers the error
        body = None
    path = request.url.path
    keys = chain(prompt_tokens(state, path, body), state.block_tokens)
    opened = await until_disconnect(request, _open(state, request, raw, keys))
    if opened is None:
        return Response(status_code=499)  # the client is gone (the replica call was cancelled)
    gen, head, chunks = opened
    headers = {k: v for k, v in head["headers"] if k.lower() not in ("content-length",)}
    headers["x-plait-replica"] = str(head.get("replica", ""))
    if not headers.get("content-type", "").startswith("text/event-stream"):
        return Response(b"".join(chunks), status_code=head["status"], headers=headers)

    async def relay() -> AsyncIterator[bytes]:
        sent = 0
        try:
            for c in chunks:
                sent += 1
                yield c
            while True:
                try:
                    c = await _next(gen, state.timeout_s)
                except StopAsyncIteration:
                    return
                sent += 1
                yield c
        except Exception as exc:  # noqa: BLE001 - the stream is open: end it with an error event
            state.replica_failures += _lost(exc)
            err = APIError(502, f"the replica serving this stream failed after {sent} chunks "
                           f"({_short(exc)}); the output is incomplete, retry the request",
                           "server_error", code="replica_died")  # fmt: skip
            yield sse(err.body()).encode()
            yield sse("[DONE]").encode()
        finally:
            gen.cancel()

    return StreamingResponse(relay(), status_code=head["status"], headers=headers)


def render_metrics(state: IngressState) -> str:
    """The ingress counters, the totals over replicas (unlabelled, as single-process serve),
    and per replica (label `replica`) the router's view and the replica's own counters."""
    import plait.serve.cluster.router as router_module

    router = router_module.LIVE.get(state.deployment)
    per = router_module.replica_stats(router) if router is not None else {}
    lines = [f"plait_cluster_replicas {len(per)}"]
    for key in ("running", "waiting"):
        lines.append(f"plait_requests_{key} {sum(s.get(key, 0.0) for s in per.values()):g}")
    for key, name in (("queue_length", "queue_length"), ("inflight", "inflight"),
                      ("prefix_cache_hit_rate", "prefix_cache_hit_rate"),
                      ("tree_tokens", "prefix_tree_tokens"), ("routed", "routed_total"),
                      ("routed_match_rate", "routed_match_rate"),
                      ("prompt_tokens", "prompt_tokens_total"),
                      ("computed_prompt_tokens", "computed_prompt_tokens_total")):  # fmt: skip
        lines.append(f"# TYPE plait_replica_{name} {'counter' if 'total' in name else 'gauge'}")
        for rid, s in sorted(per.items()):
            lines.append(f'plait_replica_{name}{{replica="{rid}"}} {s.get(key, 0.0):g}')
    if router is not None:
        lines.append(f"plait_prefix_index_entries {router.index.entries()}")
    lines += [f"plait_ingress_retries_total {state.retries}",
              f"plait_ingress_replica_failures_total {state.replica_failures}"]  # fmt: skip
    for status, count in sorted(state.responses.items()):
        lines.append(f'plait_http_responses_total{{status="{status}"}} {count}')
    return "\n".join(lines) + "\n"


def create_ingress(state: IngressState) -> Starlette:
    """The ingress app: models, health and metrics answered here, the rest by a replica."""

    def error(exc: APIError) -> JSONResponse:
        state.responses[exc.status] = state.responses.get(exc.status, 0) + 1
        return JSONResponse(exc.body(), status_code=exc.status)

    async def post(request: Request) -> Response:
        try:
            resp = await forward(request, state)
        except APIError as exc:
            return error(exc)
        except Exception as exc:  # noqa: BLE001 - a replica-side bug: answer, keep serving
            return error(APIError(500, f"internal error: {_short(exc)}", "server_error"))
        state.responses[resp.status_code] = state.responses.get(resp.status_code, 0) + 1
        return resp

    async def models(request: Request) -> Response:
        card = {"id": state.model_name, "object": "model", "created": 0, "owned_by": "plait",
                "max_model_len": state.context}  # fmt: skip
        return JSONResponse({"object": "list", "data": [card]})

    async def health(request: Request) -> Response:
        ok = not state.draining
        return JSONResponse(
            {"status": "ok" if ok else "unavailable"}, status_code=200 if ok else 503
        )

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(render_metrics(state), media_type="text/plain; version=0.0.4")

    routes = [
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/{path:path}", post, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    return Starlette(routes=routes)
