"""KV on demand through the server: 8 and 32 concurrent streaming chat requests without
max_tokens (the openai client's default) all run at once on the default KV budget (reserving the
worst case ran 4 of them at a time), and /metrics reports KV in use vs free and preemptions."""

from __future__ import annotations

import asyncio

import openai
import pytest

from plait.runtime.engine import EngineConfig
from tests.helpers.serve import MODEL, metrics, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def default_served(smol):  # noqa: ANN001, ANN201
    """A server with the engine's default limits (KV budget 32768, 64 rows)."""
    from plait.serve.server import build_state, start_in_thread

    state = build_state(smol, EngineConfig(), MODEL, max_n=4)
    server, url = start_in_thread(state)
    yield state, url
    server.should_exit = True
    state.loop.stop(timeout=10)


@pytest.mark.parametrize("count", [8, 32])
def test_requests_without_max_tokens_all_run_at_once(default_served, count: int) -> None:
    _, url = default_served

    async def main() -> dict[str, float]:
        async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0,
                                      timeout=120) as client:  # fmt: skip
            streams = await asyncio.gather(*(
                client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": f"Tell story {i}."}],
                    stream=True, temperature=0, extra_body={"ignore_eos": True},
                ) for i in range(count)
            ))  # fmt: skip
            firsts = await asyncio.gather(*(s.__anext__() for s in streams))
            assert len(firsts) == count
            running = metrics(url)  # nobody has finished: no max_tokens, EOS ignored
            for s in streams:
                await s.close()
            return running

    running = asyncio.wait_for(main(), timeout=240)
    m = asyncio.run(running)
    assert m["requests_running"] == count and m["requests_waiting"] == 0
    assert m["peak_running"] >= count
    assert m["kv_used_tokens"] + m["kv_free_tokens"] == m["kv_budget_tokens"]
    assert m["kv_used_blocks"] > 0 and m["kv_free_blocks"] > 0 and m["preemptions_total"] == 0
    assert wait_idle(url, timeout=60)["kv_request_tokens"] == 0
