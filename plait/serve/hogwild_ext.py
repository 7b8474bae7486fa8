"""The `hogwild` chat extension: a Hogwild! problem as one multi-stream request of the shared batch.

    client.chat.completions.create(model=..., messages=[{"role": "user", "content": problem}],
        extra_body={"hogwild": {"workers": 2, "budgets": [128, 256], "layout": "combined"}})

The problem runs as a `plait.hogwild.HogwildProblem`, the engine's `StreamGroup` for a
Hogwild! problem (added to the server's engine as `plait.hogwild.solve` adds it to a private one): its W workers' streams join every engine step next to the plain requests' rows,
and when a budget ends without an answer the finisher's reader streams take its place in the next
steps of the shared batch. This module only parses the request and shapes the response.

The response's message is the final answer (the last budget's snapshot); `hogwild` in the body
holds every snapshot and the workers' transcript. Streaming sends one chunk per worker token with
`hogwild: {worker, name, text}` (empty `delta`), then the answer as content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plait.hogwild import HogwildConfig, HogwildProblem
from plait.hogwild.events import DoneEvent, ProblemResult, TokenEvent
from plait.runtime.engine import GroupOutput
from plait.serve import responses as R
from plait.serve.bodies import check_fields, off_loop
from plait.serve.protocol import GenParams, bad, chat_messages
from plait.serve.state import ServeState, start_stream, until_disconnect

_FIELDS = {f.name for f in fields(HogwildConfig) if f.init}


def hogwild_config(spec: Any) -> HogwildConfig:
    """The `hogwild` object of a body as a config; 400 naming the field for a bad one."""
    if not isinstance(spec, dict):
        raise bad("hogwild", '\'hogwild\' must be an object, e.g. {"workers": 2, "budgets": [256]}')
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise bad("hogwild", f"unknown hogwild fields {unknown}; known: {sorted(_FIELDS)}")
    check_fields(spec, HogwildConfig, "hogwild")
    spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    try:
        return HogwildConfig(**spec)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad("hogwild", f"bad hogwild settings: {exc!s:.300}") from None


def make_problem(state: ServeState, body: dict[str, Any], params: GenParams) -> HogwildProblem:
    config = hogwild_config(body.get("hogwild"))
    problem = next((m["content"] for m in reversed(chat_messages(body)) if m["role"] == "user"), "")
    if not problem.strip():
        raise bad("messages", "the hogwild extension needs a user message holding the problem")
    sampling = None if params.sampling.greedy else params.sampling
    lm = state.loaded
    try:
        return HogwildProblem(lm.model, lm.tokenizer, config, problem, sampling=sampling)
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad("hogwild", f"{exc!s:.300}") from None


def result_body(result: ProblemResult) -> dict[str, Any]:
    last = result.snapshots[-1]
    return {
        "answer": last.answer, "answer_source": last.answer_source, "workers": list(result.workers),
        "layout": result.layout,
        "snapshots": [{"budget": s.budget, "passes": s.passes, "answer": s.answer,
                       "answer_source": s.answer_source} for s in result.snapshots],
        "transcript": [{"worker": t.worker, "name": t.name, "step": t.step, "text": t.text,
                        "finished": t.finished} for t in last.steps],
    }  # fmt: skip


async def handle_hogwild(
    request: Request, state: ServeState, body: dict[str, Any], params: GenParams
) -> Response:
    size = sum(len(m["content"]) for m in chat_messages(body))
    problem = await off_loop(size, make_problem, state, body, params)
    rid, name = R.new_id("chatcmpl"), state.model_name
    usage = R.Usage()

    async def events() -> AsyncIterator[tuple[str, Any]]:
        async for out in state.loop.stream(problem):
            assert isinstance(out, GroupOutput)
            if out.error:
                raise RuntimeError(f"the hogwild run failed: {out.error}")
            for ev in out.events:
                if isinstance(ev, TokenEvent):
                    usage.completion_tokens += 1
                    yield "token", ev
                elif isinstance(ev, DoneEvent):
                    yield "done", ev.result

    if params.stream:

        async def chunks() -> AsyncIterator[str]:
            yield R.sse(R.chat_chunk(rid, name, 0, {"role": "assistant", "content": ""}))
            async for kind, ev in events():
                if kind == "token":
                    tag = {"worker": ev.worker, "name": problem.cfg.resolved_names[ev.worker],
                           "text": ev.text}  # fmt: skip
                    yield R.sse(R.chat_chunk(rid, name, 0, {}, hogwild=tag))
                else:
                    res = result_body(ev)
                    yield R.sse(R.chat_chunk(rid, name, 0, {"content": res["answer"] or ""}, "stop",
                                             hogwild_result=res))  # fmt: skip

        return await start_stream(chunks())

    async def collect() -> ProblemResult | None:
        found = None
        async for kind, ev in events():
            if kind == "done":
                found = ev
        return found

    result = await until_disconnect(request, collect())
    if result is None:
        return Response(status_code=499)
    res = result_body(result)
    choice = {"index": 0, "message": {"role": "assistant", "content": res["answer"] or ""},
              "finish_reason": "stop", "logprobs": None}  # fmt: skip
    return JSONResponse({"id": rid, "object": "chat.completion", "created": 0, "model": name,
                         "choices": [choice], "usage": usage.body(), "hogwild": res})  # fmt: skip
