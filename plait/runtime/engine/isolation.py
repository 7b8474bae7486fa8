"""Request isolation: whatever goes wrong for one request ends that request, and only it.

`Engine.step` runs every per-request operation under a guard: admission (its segments, samplers
and text streams; a group's `start`), a group's `plan` (`GuardedGroup` keeps the exception), the
forward (`forward`: a failed `Runner.step` is retried without the groups whose streams do not
plan alone, `plans_alone`), sampling, log-probs, detokenising and the stop rules. A failure ends
the request with error outputs (`failure_outputs`: `SampleOutput.finish_reason == "error"` with
`error` set, or `GroupOutput.error`) and frees its KV; the step's other rows go on, their outputs
unchanged (a request's tokens depend only on its own logits row and its own sampler). Consumers
stop at a request's first error output (`raise_for_error` re-raises its exception). The exception and its traceback go
to the `plait.engine` logger, for whoever runs the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from plait.runtime.engine.groups import StreamGroup
from plait.runtime.engine.requests import GroupOutput, RequestError, SampleOutput
from plait.runtime.engine.scheduler import GroupState, RequestState, Work
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore

log = logging.getLogger("plait.engine")

Output = SampleOutput | GroupOutput


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class GuardedGroup:
    """A `StreamGroup` whose `plan` and `release` never raise: the first exception is kept in
    `error` (the engine then fails the group) and `plan` answers no streams."""

    def __init__(self, group: StreamGroup) -> None:
        self.inner = group
        self.kv_tokens, self.rows, self.instant = group.kv_tokens, group.rows, group.instant
        self.kv_start_tokens = getattr(group, "kv_start_tokens", group.kv_tokens)
        self.restartable = getattr(group, "restartable", False)  # memory.py may preempt it
        self.error: BaseException | None = None

    def start(self, store: KVStore, runner: Runner) -> None:
        self.inner.start(store, runner)

    def plan(self, budget: int) -> list[StreamInput]:
        if self.error is not None:
            return []
        try:
            return list(self.inner.plan(budget))
        except Exception as exc:  # noqa: BLE001 - kept; the engine fails this group only
            self.error = exc
            return []

    def advance(self, logits: torch.Tensor) -> list[Any]:
        return self.inner.advance(logits)

    @property
    def done(self) -> bool:
        return self.inner.done

    def release(self) -> None:
        try:
            self.inner.release()
        except Exception as exc:  # noqa: BLE001 - the other requests must go on
            log.error("a group's release failed (its KV may leak): %s", error_text(exc))


def failure_outputs(st: RequestState | GroupState, exc: BaseException) -> list[Output]:
    """The outputs that end a failed request: one error output per sample not yet finished
    (all n if it never started), or one for a group. Logs the exception."""
    message = error_text(exc)
    if isinstance(st, GroupState):
        log.error("request %s failed: %s", st.request_id, message, exc_info=exc)
        return [GroupOutput(st.request_id, [], finished=True, error=message, cause=exc)]
    req = st.request
    log.error("request %s failed: %s", req.request_id, message, exc_info=exc)
    done = {s.index for s in st.samples if s.finish is not None}
    for s in st.samples:
        s.feed, s.finish = None, s.finish or "error"
    indices = [i for i in range(req.n) if i not in done] or [0]  # at least one: consumers stop
    return [
        SampleOutput(req.request_id, i, [], "", [], "error", None, len(req.prompt),
                     st.cached_tokens, error=message, cause=exc)
        for i in indices
    ]  # fmt: skip


def failed_plans(
    running: list[RequestState | GroupState],
) -> list[tuple[GroupState, BaseException]]:
    """The running groups whose `plan` raised this step (`GuardedGroup.error`)."""
    return [
        (st, st.group.error)
        for st in running
        if isinstance(st, GroupState)
        and isinstance(st.group, GuardedGroup)
        and st.group.error is not None
    ]


def plans_alone(runner: Runner, inputs: list[StreamInput], instant: bool) -> bool:
    """Whether these streams (one group's) pass a step's checks on their own: plan, token ids,
    room in their segments, backend context (no model run, no length advanced)."""
    try:
        runner.attention_context(inputs, instant)
    except Exception:  # noqa: BLE001 - a probe: any failure marks the group
        return False
    return True


def forward(
    runner: Runner,
    work: list[Work],
    instant: bool,
    fail: Callable[[RequestState | GroupState, BaseException], list[Output]],
    outputs: list[Output],
) -> tuple[torch.Tensor | None, list[Work]]:
    """One `Runner.step` over `work`: (last-token logits (S, V), the work they belong to). If it
    raises, the groups whose streams do not plan alone fail (`fail` appends to `outputs`) and the
    rest runs again; if it raises with no such group, or again, every request of the step fails
    and the answer is (None, [])."""
    for attempt in range(2):
        if not work:
            break
        try:
            return runner.step([w.input for w in work], instant=instant), work
        except Exception as exc:  # noqa: BLE001 - isolate the culprit, keep serving
            states = list({id(w.state): w.state for w in work}.values())
            bad = [
                st for st in states if not attempt and isinstance(st, GroupState)
                and not plans_alone(runner, [w.input for w in work if w.state is st], instant)
            ]  # fmt: skip
            for st in bad or states:
                outputs += fail(st, exc)
            gone = {id(st) for st in bad or states}
            work = [w for w in work if id(w.state) not in gone]
    return None, []


def raise_for_error(out: Output) -> None:
    """Re-raise the exception that ended `out`'s request, if it did (a ValueError from the
    request's own input stays a ValueError: a user error); `RequestError` if none was kept."""
    if out.error is None:
        return
    if out.cause is not None:
        raise out.cause
    raise RequestError(f"request {out.request_id} failed in the engine: {out.error}")
