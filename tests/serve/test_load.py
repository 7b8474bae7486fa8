"""32 concurrent clients (streaming and not, varied lengths): one complete response each, no
hung stream, KV back to idle; clients that disconnect are cancelled and their KV freed."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.helpers.serve import MODEL, metrics, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]

SYSTEM = "You are a careful assistant. " * 12  # a shared prefix (several cache blocks)


async def _one(client: openai.AsyncOpenAI, i: int) -> tuple[int, str | None, int]:
    """(client index, finish reason, completion tokens) of one request."""
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Count to {i}."}]
    max_tokens = 4 + (i * 7) % 17
    if i % 2:
        stream = await client.chat.completions.create(
            model=MODEL, messages=msgs, max_tokens=max_tokens, temperature=0.7, seed=i,
            stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        finishes, usage = [], None
        async for chunk in stream:
            finishes += [c.finish_reason for c in chunk.choices if c.finish_reason]
            usage = chunk.usage or usage
        assert len(finishes) == 1 and usage is not None
        return i, finishes[0], usage.completion_tokens
    r = await client.chat.completions.create(
        model=MODEL, messages=msgs, max_tokens=max_tokens, temperature=0, n=1 + i % 3
    )
    assert len(r.choices) == 1 + i % 3 and all(c.finish_reason for c in r.choices)
    return i, r.choices[0].finish_reason, r.usage.completion_tokens


def test_32_concurrent_clients_each_get_one_complete_response(served):
    state, url = served
    before = metrics(url)

    async def main() -> list[tuple[int, str | None, int]]:
        async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0,
                                      timeout=120) as client:  # fmt: skip
            return await asyncio.wait_for(
                asyncio.gather(*(_one(client, i) for i in range(32))), timeout=180
            )

    results = asyncio.run(main())
    assert sorted(i for i, _, _ in results) == list(range(32))
    assert all(f in ("stop", "length") and n >= 1 for _, f, n in results)
    after = wait_idle(url)
    assert after["kv_request_tokens"] == 0
    assert after["finished_requests_total"] - before["finished_requests_total"] == 32
    assert after["prefix_cache_hit_rate"] > 0.5  # the shared system prompt was computed once
    assert after["generated_tokens_total"] - before["generated_tokens_total"] >= sum(
        n for _, _, n in results
    )
    assert after["steps_total"] > before["steps_total"] and after["last_step_seconds"] > 0
    engine = state.loop.engine
    assert engine.store.reserved_slots() == engine.cache.total_tokens()  # only cached blocks


def test_disconnected_clients_are_cancelled_and_freed(served):
    _, url = served
    before = metrics(url)["cancelled_requests_total"]
    body = {"model": MODEL, "prompt": "Tell me a very long story.", "max_tokens": 3000,
            "temperature": 0.8, "ignore_eos": True}  # fmt: skip
    stream_body = {**body, "stream": True}
    with (
        httpx.Client(timeout=30) as client,  # a stream dropped after a few lines
        client.stream("POST", url + "/completions", json=stream_body) as r,
    ):
        lines = r.iter_lines()
        got = [next(lines) for _ in range(4)]
        assert any(line.startswith("data: {") for line in got)
    with pytest.raises(httpx.ReadTimeout):  # a whole-response client that gives up
        httpx.post(url + "/completions", json=body, timeout=1.0)
    deadline = time.monotonic() + 20
    while metrics(url)["cancelled_requests_total"] < before + 2:
        assert time.monotonic() < deadline, "disconnected requests were not cancelled"
        time.sleep(0.05)
    assert wait_idle(url)["kv_request_tokens"] == 0
