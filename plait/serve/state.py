"""What every handler shares: the server's state and the request helpers (below the handlers).

`ServeState` holds the loaded model, the `EngineLoop`, the limits and the response counters;
`read_body` runs the server-level checks of a POST (draining, media type, size, depth and JSON
through plait.serve.bodies, model, queue); `chat_prompt` renders chat messages through the
template (a long one on a worker thread); `merged` streams the outputs of
several engine requests as they come; `until_disconnect` and `start_stream` tie a request's
work to its client (a client that leaves cancels its engine requests, freeing their KV);
`api_error` / `error_response` turn exceptions into OpenAI-shaped errors. The handlers
(completions, chat, hogwild_ext, threads_ext) import this module; it imports none of them.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

from plait.runtime.engine import CapacityError, EngineRequest, SampleOutput
from plait.runtime.loading.tokenizer import chat_prompt_ids
from plait.serve.bodies import check_content_type, off_loop, parse_json
from plait.serve.loop import EngineLoop, ShuttingDown
from plait.serve.protocol import APIError, GenParams, Limits, bad, chat_messages
from plait.serve.responses import sse


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

    def count(self, status: int) -> None:
        """Count one HTTP response of `status` (for /metrics)."""
        self.responses[status] = self.responses.get(status, 0) + 1


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


async def chat_prompt(state: ServeState, body: dict[str, Any]) -> list[int]:
    """The chat prompt as ids (the template's generation prompt appended); a long one is
    tokenised on a worker thread."""
    messages = chat_messages(body)
    size = sum(len(m["content"]) for m in messages)
    return list(await off_loop(size, _template_ids, state.loaded.tokenizer, messages))


def _template_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    try:
        return chat_prompt_ids(tokenizer, messages)
    except Exception as exc:  # noqa: BLE001 - a template or tokenizer that rejects these messages
        raise bad("messages", f"the chat template rejected the messages: {exc!s:.200}") from None


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
                raise api_error(item)
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def api_error(exc: BaseException) -> APIError:
    """The OpenAI-shaped error for an exception (bad input 400, never fits 413, else 500)."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, CapacityError):
        return APIError(413, str(exc))
    if isinstance(exc, ShuttingDown):
        return APIError(503, str(exc), "server_error")
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
    state.count(exc.status)
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
