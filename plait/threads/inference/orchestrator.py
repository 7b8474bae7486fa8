"""The ThreadWeaver state machine on token ids, over any `CompletionBackend`.

Loop (paper section 3.2, with the release's join): 1) decode sequentially until `</Outlines>`,
EOS or the budget; 2) read the outline numbers of the open block (duplicates dropped, at most
`max_threads`); 3) send one request per outline, context + `\\n<Thread>\\n{n}:`, stopping at
`</Thread>` (one batch: the runtime backend decodes them as streams together); 4) join: the first
thread keeps its `\\n<Thread>\\n1:` header, later ones get `<Thread>\\n{n}:` so threads touch,
then `\\n`; the model itself writes `</Parallel>` next; 5) continue. A thread that stops without
`</Thread>` is closed with `\\n</Thread>`; EOS inside a thread is cut, the block is still joined in
full and closed with `</Parallel>`, and the run ends. There is no early return: every block that
forked is joined. Every engine call is logged with its exact context.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.parser import SegmentTree, parse
from plait.threads.inference.backend_api import Completion, CompletionBackend, CompletionRequest

StopReason = Literal["eos", "length", "max_calls", "eos_in_thread"]


@dataclass(slots=True, kw_only=True)
class OrchestratorConfig:
    """Budgets and sampling for one run."""

    max_total_tokens: int = 40960  # response tokens (merged, inserted ones included)
    max_thread_tokens: int = 8192  # per thread
    max_threads: int = 16  # threads per block; extra outlines get no thread
    max_blocks: int = 32  # after this many forks, outlines are decoded as plain text (AR mode)
    max_context_tokens: int | None = None  # model context limit (prompt + response), if any
    max_calls: int = 512  # engine calls (batches count once)
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None  # thread j of call c gets seed + 1000 * c + j
    logprobs: bool = False  # ask each call for its tokens' log-probs (`ThreadRun.logprobs`)

    def __post_init__(self) -> None:
        ints = ("max_total_tokens", "max_thread_tokens", "max_threads", "max_calls", "max_blocks",
                "top_k")  # fmt: skip
        for name in (*ints, "max_context_tokens", "seed"):
            v = getattr(self, name)
            if (v is not None or name in ints) and (type(v) is not int):
                raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
        for name in ("max_total_tokens", "max_thread_tokens", "max_threads", "max_calls"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_blocks < 0:
            raise ValueError(f"max_blocks must be >= 0 (0 = never fork), got {self.max_blocks}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        for name in ("temperature", "top_p"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{name} must be a number, got {type(v).__name__} {v!r}")
        if not 0.0 <= self.temperature < float("inf"):  # also refuses NaN
            raise ValueError(f"temperature must be a finite number >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One engine request and its answer: a (context, completion) unit."""

    kind: Literal["seq", "thread"]
    block: int | None  # index of the block for thread calls
    number: str | None  # outline number for thread calls
    context: list[int]
    completion: Completion
    start_s: float  # seconds since the run started
    end_s: float


@dataclass(slots=True, kw_only=True)
class ThreadRun:
    """Result of `Orchestrator.run`."""

    tokens: list[int]  # prompt + merged response
    prompt_len: int
    inserted: list[bool]  # per response token: inserted by the orchestrator
    tree: SegmentTree
    calls: list[CallRecord]
    stop_reason: StopReason
    wall_s: float
    block_wall_s: list[float] = field(default_factory=list)  # thread-batch time per block
    warnings: list[str] = field(default_factory=list)
    # per response token: the log-prob the backend reported when sampling it (None: inserted by
    # the orchestrator, or not reported)
    logprobs: list[float | None] = field(default_factory=list)

    @property
    def response(self) -> list[int]:
        return self.tokens[self.prompt_len :]


class Orchestrator:
    """Runs the state machine; `await orch.run(prompt_ids)` or `orch.run_sync(prompt_ids)`."""

    def __init__(self, engine: CompletionBackend, fmt: ThreadFormat, config: OrchestratorConfig):
        self.engine, self.fmt, self.config = engine, fmt, config

    def run_sync(self, prompt: list[int]) -> ThreadRun:
        return asyncio.run(self.run(prompt))

    def _request(
        self, ctx: list[int], max_tokens: int, stops: tuple[int, ...], seed: int | None, tag: str
    ) -> CompletionRequest:
        c = self.config
        return CompletionRequest(
            context=ctx, max_tokens=max_tokens, stop_token_ids=stops,
            eos_token_ids=self.fmt.eos_ids, temperature=c.temperature, top_p=c.top_p,
            top_k=c.top_k, seed=seed, logprobs=c.logprobs, tag=tag,
        )  # fmt: skip

    def outline_numbers(self, tokens: list[int]) -> list[str]:
        """Numbers of the outlines in the open block at the end of `tokens`, deduplicated."""
        tg = self.fmt.tags
        o = next((k for k in range(len(tokens) - 1, -1, -1) if tokens[k] == tg.outlines), None)
        if o is None:
            return []
        p = next((k for k in range(o, -1, -1) if tokens[k] in (tg.parallel, tg.parallel_end)), None)
        if p is None or tokens[p] != tg.parallel:
            return []  # </Outlines> outside an open block: plain text
        nums: list[str] = []
        for k in range(o + 1, len(tokens)):
            if tokens[k] == tg.outline:
                n = self.fmt.item_number(tokens[k + 1 : k + 24])
                if n is not None and n not in nums:
                    nums.append(n)
        return nums

    async def run(self, prompt: list[int]) -> ThreadRun:
        """Generate one trajectory from `prompt` ids."""
        state = _RunState(self, list(prompt))
        while await self._step(state):
            pass
        run = state.run
        run.tree = parse(run.tokens, self.fmt, prompt_len=run.prompt_len)
        run.wall_s = time.perf_counter() - state.t0
        return run

    async def _step(self, state: _RunState) -> bool:
        """One sequential call and, if it ended at `</Outlines>`, one fork/join; False = stop."""
        cfg, run = self.config, state.run
        left = state.remaining()
        if left < 1 or len(run.calls) >= cfg.max_calls:
            run.stop_reason = "length" if left < 1 else "max_calls"
            return False
        # 1) sequential phase
        stops = (self.fmt.tags.outlines_end,) if state.blocks < cfg.max_blocks else ()
        seed = None if cfg.seed is None else cfg.seed + 1000 * len(run.calls)
        req = self._request(list(run.tokens), left, stops, seed, "seq")
        (c,) = await state.call([req], "seq", None, [None])
        state.put(c.tokens, False, c.logprobs)
        if c.finish_reason != "stop":
            run.stop_reason = c.finish_reason  # "eos" or "length"
            return False
        # 2) outlines
        nums = self.outline_numbers(run.tokens)
        if not nums:
            run.warnings.append(
                f"</Outlines> at token {len(run.tokens) - 1} without numbered outlines; "
                "continuing sequentially"
            )
            return True
        if len(nums) > cfg.max_threads:
            run.warnings.append(
                f"block {state.blocks}: {len(nums)} outlines, threads capped at {cfg.max_threads}"
            )
            nums = nums[: cfg.max_threads]
        return await self._fork(state, nums)

    async def _fork(self, state: _RunState, nums: list[str]) -> bool:
        """3) one batch with a request per outline; 4) join in outline order. False = stop."""
        cfg, fmt, run = self.config, self.fmt, state.run
        tg = fmt.tags
        heads = [fmt.thread_header(n, leading_newline=True) for n in nums]
        overhead = sum(len(h) for h in heads) + 2 * len(fmt.newline()) + 2 * len(nums) + 1
        per = min(cfg.max_thread_tokens, (state.remaining() - overhead) // len(nums))
        if per < 1:
            state.put([tg.parallel_end], True)
            run.warnings.append(f"block {state.blocks}: no budget left for threads")
            run.stop_reason = "length"
            return False
        base = (cfg.seed or 0) + 1000 * len(run.calls)
        reqs = [
            self._request(
                list(run.tokens) + h,
                per,
                (tg.thread_end,),
                None if cfg.seed is None else base + j,
                f"thread {n}",
            )  # fmt: skip
            for j, (n, h) in enumerate(zip(nums, heads))
        ]
        tb = time.perf_counter()
        outs = await state.call(reqs, "thread", state.blocks, list(nums))
        run.block_wall_s.append(time.perf_counter() - tb)
        eos_hit = self._join(state, nums, outs)
        state.put(fmt.newline(), True)
        state.blocks += 1
        # a thread cut by the share of the *total* budget means the run is out of budget
        starved = per < cfg.max_thread_tokens and any(o.finish_reason == "length" for o in outs)
        if eos_hit or starved or state.remaining() < 1:
            state.put([tg.parallel_end], True)  # the run must stop: close the block ourselves
            run.stop_reason = "eos_in_thread" if eos_hit else "length"
            return False
        return True

    def _join(self, state: _RunState, nums: list[str], outs: list[Completion]) -> bool:
        """Append every thread (header, body, closer); True if one of them hit EOS."""
        fmt, eos_hit = self.fmt, False
        for j, (n, c) in enumerate(zip(nums, outs)):
            state.put(fmt.thread_header(n, leading_newline=j == 0), True)
            body = list(c.tokens)
            if c.finish_reason == "eos":
                body, eos_hit = body[:-1], True  # EOS is not part of a thread
            state.put(body, False, None if c.logprobs is None else c.logprobs[: len(body)])
            if c.finish_reason != "stop":
                ends_nl = bool(body) and fmt.decode(body[-1:]).endswith("\n")
                state.put(([] if ends_nl else fmt.newline()) + [fmt.tags.thread_end], True)
        return eos_hit


class _RunState:
    """The mutable state of one `Orchestrator.run`: the merged tokens, flags, calls, blocks."""

    def __init__(self, orch: Orchestrator, prompt: list[int]) -> None:
        self.orch, self.t0, self.blocks = orch, time.perf_counter(), 0
        self.run = ThreadRun(
            tokens=list(prompt), prompt_len=len(prompt), inserted=[],
            tree=parse(prompt, orch.fmt, prompt_len=len(prompt)), calls=[],
            stop_reason="length", wall_s=0.0,
        )  # fmt: skip

    def put(
        self, toks: list[int], by_orchestrator: bool, logprobs: list[float | None] | None = None
    ) -> None:
        self.run.tokens.extend(toks)
        self.run.inserted.extend([by_orchestrator] * len(toks))
        self.run.logprobs.extend([None] * len(toks) if logprobs is None else logprobs)

    def remaining(self) -> int:
        """Response tokens still allowed (total budget, and the model context if given)."""
        cfg, run = self.orch.config, self.run
        left = cfg.max_total_tokens - (len(run.tokens) - run.prompt_len)
        if cfg.max_context_tokens is not None:
            left = min(left, cfg.max_context_tokens - len(run.tokens))
        return left

    async def call(
        self,
        reqs: list[CompletionRequest],
        kind: Literal["seq", "thread"],
        block: int | None,
        nums: list[str | None],
    ) -> list[Completion]:
        """One engine batch, logged as a `CallRecord` per request with its exact context."""
        start = time.perf_counter() - self.t0
        out = await self.orch.engine.complete(reqs)
        if len(out) != len(reqs):
            raise RuntimeError(f"engine returned {len(out)} completions for {len(reqs)} requests")
        end = time.perf_counter() - self.t0
        for r, c, n in zip(reqs, out, nums):
            self.run.calls.append(
                CallRecord(
                    kind=kind,
                    block=block,
                    number=n,
                    context=list(r.context),
                    completion=c,
                    start_s=start,
                    end_s=end,
                )  # fmt: skip
            )
        return out
