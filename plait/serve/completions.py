"""POST /v1/completions: one engine request per prompt (n samples each), whole or streamed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plait.serve import responses as R
from plait.serve.bodies import off_loop
from plait.serve.protocol import bad, check_length, completion_prompts, gen_params
from plait.serve.state import ServeState, merged, read_body, start_stream, until_disconnect

DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


def encode(tokenizer: Any, text: str) -> list[int]:
    """Prompt text as ids; 400 if the tokenizer cannot take it (e.g. a lone surrogate)."""
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except Exception as exc:  # noqa: BLE001 - the text is the client's
        raise bad("prompt", f"the prompt could not be tokenised ({type(exc).__name__}); send "
                  "valid Unicode text") from None  # fmt: skip


async def handle(request: Request, state: ServeState) -> Response:
    body = await read_body(request, state)
    params = gen_params(body, state.limits, chat=False)
    if body.get("echo"):
        raise bad("echo", "'echo' is not supported; leave it out")
    if body.get("suffix"):
        raise bad("suffix", "'suffix' is not supported; leave it out")
    if params.max_tokens is None:
        params.max_tokens = DEFAULT_MAX_TOKENS
    tok = state.loaded.tokenizer
    raw = body.get("prompt")
    size = sum(len(p) for p in (raw if isinstance(raw, list) else [raw]) if isinstance(p, str))
    prompts = await off_loop(size, completion_prompts, body, state.limits, lambda s: encode(tok, s))
    reqs = [
        state.engine_request(p, check_length(p, params, state.limits, "prompt"), params)
        for p in prompts
    ]
    rid, name, n = R.new_id("cmpl"), state.model_name, params.n
    text = R.TokenText(tok, params.token_ids_as_text) if params.logprobs is not None else None
    choices = R.Choices(len(prompts) * n)

    if params.stream:

        async def events() -> AsyncIterator[str]:
            offsets = [0] * len(choices.choices)
            async for i, out in merged(state, reqs):
                index = choices.add(i, n, out)
                yield R.sse(R.completion_chunk(rid, name, index, out, text, offsets[index]))
                offsets[index] += sum(len(text(t)) for t in out.token_ids) if text else 0
            if params.include_usage:
                yield R.sse(R.usage_chunk(rid, name, "text_completion", choices.usage))

        return await start_stream(events())

    async def collect() -> bool:
        async for i, out in merged(state, reqs):
            choices.add(i, n, out)
        return True

    if not await until_disconnect(request, collect()):
        return Response(status_code=499)  # the client is gone; nobody reads this
    return JSONResponse(R.completion_body(rid, name, choices, text))
