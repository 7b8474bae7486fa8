"""The `hogwild` chat extension: a Hogwild! problem as one multi-stream request of the shared batch.

    client.chat.completions.create(model=..., messages=[{"role": "user", "content": problem}],
        extra_body={"hogwild": {"workers": 2, "budgets": [128, 256], "layout": "combined"}})

`HogwildGroup` adapts one problem of `plait.hogwild` to the engine's `StreamGroup` protocol: its
W workers' streams (over the problem's own segments: common history, shared texts, per-worker
steps) join every engine step next to the plain requests' rows; the problem's state machine
(`ProblemRun`) samples, applies the paragraph rule and records snapshots exactly as
`HogwildEngine.stream` does for one problem. When a budget ends without an answer, the finisher's
reader streams (`FinisherBatch`) take the group's place in the next steps of the shared batch.

The response's message is the final answer (the last budget's snapshot); `hogwild` in the body
holds every snapshot and the workers' transcript. Streaming sends one chunk per worker token with
`hogwild: {worker, name, text}` (empty `delta`), then the answer as content.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import torch
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from plait.hogwild import HogwildConfig, HogwildEngine
from plait.hogwild.events import DoneEvent, ProblemResult, TokenEvent
from plait.hogwild.finisher import FinisherBatch, FinisherRequest
from plait.runtime.engine import GroupOutput
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from plait.serve import responses as R
from plait.serve.protocol import GenParams, bad, chat_messages

if TYPE_CHECKING:
    from plait.serve.app import ServeState

_FIELDS = {f.name for f in fields(HogwildConfig) if f.init}


class HogwildGroup:
    """One Hogwild! problem as a `StreamGroup` (see the module docstring)."""

    def __init__(self, hogwild: HogwildEngine, problem: str) -> None:
        self.hw, self.problem = hogwild, problem
        c = hogwild.cfg
        prompt = len(hogwild.encode(hogwild.prompt_text(problem)))
        shared = len(hogwild.layout.shared(c.workers))
        # an upper bound on what the workspace, its regrowths and the finisher may allocate
        self.kv_tokens = (prompt + 64 + 2 * c.workers * c.max_budget + 2 * c.workers * min(c.capacity, 1024)
                          + 16 * shared + c.finisher_max_tokens + 64)  # fmt: skip
        self.rows = 2 * c.workers
        self.instant = c.instant
        self.run: Any = None
        self.finisher: FinisherBatch | None = None
        self._planned: tuple[list[Any], list[Any]] = ([], [])

    def start(self, store: KVStore, runner: Runner) -> None:
        self.hw.store, self.hw.runner = store, runner  # the engine's store and runner
        self.run = self.hw._start(0, self.problem)  # noqa: SLF001 - prompt prefill + state machine

    def plan(self, budget: int) -> list[StreamInput]:
        if self.finisher is not None:  # the finisher's readers run before the next pass
            return [StreamInput(t, v, w) for t, v, w in self.finisher.streams()]
        feeds = self.run.feeds()
        planned = self.run.ws.plan(feeds)
        self._planned = (feeds, planned)
        return [StreamInput(s.tokens, s.view, s.write_to) for s in planned]

    def advance(self, logits: torch.Tensor) -> list[Any]:
        if self.finisher is not None:
            return self._advance_finisher(logits)
        feeds, planned = self._planned
        self.run.advance(feeds, {s.worker: logits[k] for k, s in enumerate(planned) if s.logits})
        events = list(self.run.events)
        self.run.events.clear()
        if self.run.pending_finishers():
            c = self.hw.cfg
            view = [FinisherRequest(view=self.run.ws.reader_view())]
            self.finisher = FinisherBatch(self.hw.store, view, self.hw.encode, self.hw.decode,
                                          c.task, c.finisher_max_tokens)  # fmt: skip
            return events
        return events + list(self.hw._flush(self.run))  # noqa: SLF001

    def _advance_finisher(self, logits: torch.Tensor) -> list[Any]:
        assert self.finisher is not None
        self.finisher.advance(logits)
        if not self.finisher.done:
            return []
        ((answer, text),) = self.finisher.results()
        self.finisher.free()
        self.finisher = None
        for snap in self.run.pending_finishers():  # as HogwildEngine._finish
            snap.answer, snap.finisher_text = answer, text
            snap.answer_source = "finisher" if answer is not None else "none"
        return list(self.hw._flush(self.run))  # noqa: SLF001

    @property
    def done(self) -> bool:
        return self.run is not None and self.run.finished and self.finisher is None

    def release(self) -> None:
        if self.finisher is not None:
            self.finisher.free()
        if self.run is not None:
            self.run.ws.free()


def make_group(state: ServeState, body: dict[str, Any], params: GenParams) -> HogwildGroup:
    spec = body.get("hogwild")
    if not isinstance(spec, dict):
        raise bad("hogwild", '\'hogwild\' must be an object, e.g. {"workers": 2, "budgets": [256]}')
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise bad("hogwild", f"unknown hogwild fields {unknown}; known: {sorted(_FIELDS)}")
    spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    try:
        config = HogwildConfig(**spec)
    except (TypeError, ValueError) as exc:
        raise bad("hogwild", f"bad hogwild settings: {exc}") from None
    problem = next((m["content"] for m in reversed(chat_messages(body)) if m["role"] == "user"), "")
    if not problem.strip():
        raise bad("messages", "the hogwild extension needs a user message holding the problem")
    sampling = None if params.sampling.greedy else params.sampling
    lm = state.loaded
    try:
        return HogwildGroup(
            HogwildEngine(lm.model, lm.tokenizer, config, sampling=sampling), problem
        )
    except ValueError as exc:
        raise bad("hogwild", str(exc)) from None


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
    from plait.serve.app import start_stream, until_disconnect

    group = make_group(state, body, params)
    rid, name = R.new_id("chatcmpl"), state.model_name
    usage = R.Usage()

    async def events() -> AsyncIterator[tuple[str, Any]]:
        async for out in state.loop.stream(group):
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
                    tag = {"worker": ev.worker, "name": group.hw.cfg.resolved_names[ev.worker],
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
