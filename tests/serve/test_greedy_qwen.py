"""Greedy on the real Qwen2.5-0.5B (bf16, `slow`; the default suite checks the same on SmolLM2): the server's answer == `generate` == the engine alone
== the engine with 7 other requests in the batch (sharing the chat template's prefix blocks)."""

from __future__ import annotations

import asyncio

import openai
import pytest

from plait.runtime.engine import Engine, EngineConfig, EngineRequest
from plait.runtime.generate import greedy
from tests.helpers.engine import reference_greedy
from tests.helpers.serve import require

pytestmark = [pytest.mark.model, pytest.mark.server, pytest.mark.slow]  # ~1 min idle, 3 loaded

QUESTION = "In two sentences, why is the sky blue?"
OTHERS = ["Name a colour.", "Say hello in French.", "What is 2 + 2?", "Name a planet.",
          "Spell 'cat'.", "What is the opposite of hot?", "Count to three."]  # fmt: skip
TOKENS = 16


def test_greedy_server_generate_engine_alone_and_batched_agree():
    require("qwen2.5-0.5b")
    from plait.runtime.loading.loader import load_model
    from plait.serve.server import build_state, start_in_thread

    lm = load_model("qwen2.5-0.5b", dtype="bf16")
    ids = lm.chat_prompt_ids(QUESTION)
    want = reference_greedy(lm.model, ids, TOKENS, stop_ids=lm.eos_token_ids)
    assert greedy(lm.model, ids, TOKENS, stop_ids=lm.eos_token_ids) == want  # generate
    assert len(want) >= 8  # a long enough answer to compare
    config = EngineConfig(block_tokens=16, kv_budget_tokens=8192)
    alone = Engine(lm.model, config=config).generate([EngineRequest(prompt=ids, max_tokens=TOKENS)])
    reqs = [EngineRequest(prompt=lm.chat_prompt_ids(q), max_tokens=TOKENS - 2 * k)
            for k, q in enumerate(OTHERS)]  # fmt: skip
    reqs.insert(3, EngineRequest(prompt=ids, max_tokens=TOKENS))
    batched = Engine(lm.model, config=config).generate(reqs)
    assert alone[0][0] == want
    assert batched[3][0] == want
    state = build_state(lm, config, "qwen")
    server, url = start_in_thread(state)
    try:

        async def ask() -> list[str]:
            async with openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0) as c:
                rs = await asyncio.gather(*(
                    c.completions.create(model="qwen", prompt=p, max_tokens=TOKENS, temperature=0)
                    for p in [ids, *(lm.chat_prompt_ids(q) for q in OTHERS)]
                ))  # fmt: skip
                return [r.choices[0].text for r in rs]

        texts = asyncio.run(ask())
    finally:
        server.should_exit = True
        state.loop.stop(timeout=10)
    assert texts[0] == lm.tokenizer.decode(want, skip_special_tokens=True)
