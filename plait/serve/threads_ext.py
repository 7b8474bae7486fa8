"""The `threads` chat extension: the ThreadWeaver orchestrator runs inside the server.

    client.chat.completions.create(model=..., messages=[...],
        extra_body={"threads": {"max_total_tokens": 512, "max_threads": 4}})

The orchestrator (`plait.threads.inference.Orchestrator`) drives an `EngineBackend` (the
ThreadWeaver `CompletionBackend` on plait's engine, plait/threads/inference/runtime_backend.py)
over the server's engine loop: `complete(requests)` puts every request of a call (the threads of
one block) into the engine at once: they decode as rows of the shared batch, next to everyone else's,
and their common context is stored once through the prefix cache; each finished thread stays in
the cache (`cache_output`), so the join's merged context reads thread 1's K/V instead of
recomputing it.
The answer is the merged trajectory's text; `threads` in the body holds its metrics (critical path, self-parallelism,
blocks, threads), the stop reason and the engine calls. `stream` is not supported here (a
trajectory is merged only when its blocks join).
"""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plait.serve import responses as R
from plait.serve.bodies import check_fields
from plait.serve.protocol import GenParams, bad
from plait.serve.state import ServeState, chat_prompt, until_disconnect
from plait.threads.format import ThreadFormat, trajectory_stats
from plait.threads.inference import Orchestrator, OrchestratorConfig
from plait.threads.inference.runtime_backend import EngineBackend

_FIELDS = {f.name for f in fields(OrchestratorConfig) if f.init} - {
    "temperature", "top_p", "top_k", "seed", "max_context_tokens",
}  # fmt: skip


def thread_format(state: ServeState) -> ThreadFormat:
    """The ThreadWeaver format over a copy of the served tokenizer (tags added if missing),
    built once per server."""
    if state.thread_format is None:
        state.thread_format = ThreadFormat.from_tokenizer(copy.deepcopy(state.loaded.tokenizer))
    return state.thread_format


def orchestrator_config(spec: Any, params: GenParams, context: int) -> OrchestratorConfig:
    if not isinstance(spec, dict):
        raise bad("threads", "'threads' must be an object, e.g. {\"max_total_tokens\": 512}")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise bad("threads", f"unknown threads fields {unknown}; known: {sorted(_FIELDS)}")
    check_fields(spec, OrchestratorConfig, "threads")
    s = params.sampling
    try:
        return OrchestratorConfig(**spec, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                  seed=s.seed, max_context_tokens=context)  # fmt: skip
    except (TypeError, ValueError, OverflowError) as exc:
        raise bad("threads", f"bad threads settings: {exc!s:.300}") from None


async def handle_threads(
    request: Request, state: ServeState, body: dict[str, Any], params: GenParams
) -> Response:
    if params.stream:
        raise bad("stream", "the threads extension answers whole trajectories; set stream false")
    config = orchestrator_config(body.get("threads"), params, state.limits.context)
    prompt = await chat_prompt(state, body)
    fmt = thread_format(state)
    engine = EngineBackend(state.loop.engine, stream=state.loop.stream)
    run = await until_disconnect(request, Orchestrator(engine, fmt, config).run(prompt))
    if run is None:
        return Response(status_code=499)
    stats = trajectory_stats(run.tree, run.inserted)
    text = state.loaded.tokenizer.decode(run.response, skip_special_tokens=False)
    for eos in fmt.eos_ids:
        text = text.replace(state.loaded.tokenizer.decode([eos], skip_special_tokens=False), "")
    usage = R.Usage(prompt_tokens=len(prompt), completion_tokens=engine.tokens)
    threads = {
        "stop_reason": run.stop_reason, "response_tokens": len(run.response),
        "critical_path": stats.critical_path, "self_parallelism": stats.self_parallelism,
        "blocks": stats.blocks, "threads": stats.threads, "calls": len(run.calls),
        "block_wall_s": run.block_wall_s, "wall_s": run.wall_s, "warnings": run.warnings,
    }  # fmt: skip
    choice = {"index": 0, "message": {"role": "assistant", "content": text},
              "finish_reason": "length" if run.stop_reason == "length" else "stop", "logprobs": None}  # fmt: skip
    return JSONResponse({"id": R.new_id("chatcmpl"), "object": "chat.completion", "created": 0,
                         "model": state.model_name, "choices": [choice], "usage": usage.body(),
                         "threads": threads})  # fmt: skip
