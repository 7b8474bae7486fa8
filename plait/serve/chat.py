"""POST /v1/chat/completions: the messages through the model's chat template, n samples of one
engine request, whole or streamed; a `hogwild` or `threads` object in the body hands the request
to that extension (plait.serve.hogwild_ext, plait.serve.threads_ext)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plait.serve import responses as R
from plait.serve.hogwild_ext import handle_hogwild
from plait.serve.protocol import bad, check_length, gen_params
from plait.serve.state import (
    ServeState,
    chat_prompt,
    merged,
    read_body,
    start_stream,
    until_disconnect,
)
from plait.serve.threads_ext import handle_threads


async def handle(request: Request, state: ServeState) -> Response:
    body = await read_body(request, state)
    params = gen_params(body, state.limits, chat=True)
    if body.get("hogwild") is not None and body.get("threads") is not None:
        raise bad("hogwild", "send either 'hogwild' or 'threads', not both")
    if body.get("hogwild") is not None:
        return await handle_hogwild(request, state, body, params)
    if body.get("threads") is not None:
        return await handle_threads(request, state, body, params)
    if body.get("tools") or body.get("functions"):
        raise bad("tools", "tool calling is not supported by plait serve; leave 'tools' out")
    prompt = await chat_prompt(state, body)
    req = state.engine_request(prompt, check_length(prompt, params, state.limits), params)
    rid, name, n = R.new_id("chatcmpl"), state.model_name, params.n
    tok = state.loaded.tokenizer
    text = R.TokenText(tok, params.token_ids_as_text) if params.logprobs is not None else None
    choices = R.Choices(n)

    if params.stream:

        async def events() -> AsyncIterator[str]:
            started: set[int] = set()
            async for _, out in merged(state, [req]):
                index = choices.add(0, n, out)
                if index not in started:
                    started.add(index)
                    yield R.sse(
                        R.chat_chunk(rid, name, index, {"role": "assistant", "content": ""})
                    )
                lp = R.chat_logprobs(out.logprobs, text) if text else None
                delta = {"content": out.text} if out.text or out.finish_reason is None else {}
                finish = choices.choices[index].finish_reason
                yield R.sse(R.chat_chunk(rid, name, index, delta, finish, lp))
            if params.include_usage:
                yield R.sse(R.usage_chunk(rid, name, "chat.completion.chunk", choices.usage))

        return await start_stream(events())

    async def collect() -> bool:
        async for _, out in merged(state, [req]):
            choices.add(0, n, out)
        return True

    if not await until_disconnect(request, collect()):
        return Response(status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(R.chat_body(rid, name, choices, text))
