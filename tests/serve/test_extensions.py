"""The `hogwild` and `threads` chat extensions end to end through the openai client."""

from __future__ import annotations

import openai
import pytest

from plait.hogwild import HogwildConfig, solve
from tests.helpers.engine import reference_greedy as greedy
from tests.helpers.serve import MODEL, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]

PROBLEM = "A farmer has 12 cows and buys 5 more. How many cows does he have?"
SPEC = {"workers": 2, "budgets": [4, 8], "finisher_max_tokens": 3}


def test_hogwild_extension_matches_hogwild_solve(served, smol):
    _, url = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": PROBLEM}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                       extra_body={"hogwild": SPEC})  # fmt: skip
    got = r.model_extra["hogwild"]
    cfg = HogwildConfig(workers=2, budgets=(4, 8), finisher_max_tokens=3)
    want = solve(smol.model, smol.tokenizer, PROBLEM, cfg)
    assert [s["budget"] for s in got["snapshots"]] == [4, 8]
    assert [(s["answer"], s["answer_source"]) for s in got["snapshots"]] == [
        (s.answer, s.answer_source) for s in want.snapshots
    ]
    assert [t["text"] for t in got["transcript"]] == [t.text for t in want.snapshots[-1].steps]
    assert r.choices[0].message.content == (want.snapshots[-1].answer or "")
    # streaming: worker-tagged deltas rebuild each worker's text; the answer comes last
    chunks = list(client.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                                 stream=True, extra_body={"hogwild": SPEC}))  # fmt: skip
    texts = {0: "", 1: ""}
    for c in chunks:
        tag = (c.model_extra or {}).get("hogwild")
        if tag:
            texts[tag["worker"]] += tag["text"]
    steps = want.snapshots[-1].steps
    for w in (0, 1):
        assert texts[w] == "".join(t.text for t in steps if t.worker == w)
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert wait_idle(url)["kv_request_tokens"] == 0


def test_hogwild_bad_settings_are_400(served):
    _, url = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": PROBLEM}]
    with pytest.raises(openai.BadRequestError, match="unknown hogwild fields"):
        client.chat.completions.create(
            model=MODEL, messages=msgs, extra_body={"hogwild": {"wrkers": 2}}
        )
    with pytest.raises(openai.BadRequestError, match="bad hogwild settings"):
        client.chat.completions.create(
            model=MODEL, messages=msgs, extra_body={"hogwild": {"workers": 0}}
        )


def test_threads_extension_runs_the_orchestrator_in_the_server(served, smol):
    """The untrained model writes no tags: one sequential call, the same tokens as greedy."""

    _, url = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": "What is 2 + 3? Answer briefly."}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                       extra_body={"threads": {"max_total_tokens": 24}})  # fmt: skip
    t = r.model_extra["threads"]
    assert t["calls"] == 1 and t["blocks"] == 0 and t["self_parallelism"] == 1.0
    assert t["critical_path"] == t["response_tokens"] == r.usage.completion_tokens <= 24
    want = greedy(
        smol.model, smol.chat_prompt_ids(msgs[0]["content"]), 24, stop_ids=smol.eos_token_ids
    )
    text = smol.tokenizer.decode(
        [x for x in want if x not in smol.eos_token_ids], skip_special_tokens=False
    )
    assert r.choices[0].message.content == text
    with pytest.raises(openai.BadRequestError, match="unknown threads fields"):
        client.chat.completions.create(model=MODEL, messages=msgs, extra_body={"threads": {"x": 1}})


def test_a_block_of_threads_decodes_as_rows_of_one_batch(served, smol):
    """EngineBackend over the server's loop (the orchestrator's backend there): a block's three threads share
    their context through the prefix cache and each follows the engine contract."""
    import asyncio

    from plait.threads.inference import CompletionRequest
    from plait.threads.inference.runtime_backend import EngineBackend

    state, _ = served
    ctx = smol.chat_prompt_ids("Plan three steps to bake bread.")
    heads = [smol.tokenizer.encode(f"\nStep {i}:", add_special_tokens=False) for i in (1, 2, 3)]
    want = [greedy(smol.model, ctx + h, 12) for h in heads]
    stop = want[1][4]
    reqs = [CompletionRequest(context=ctx + h, max_tokens=12, stop_token_ids=(stop,),
                              eos_token_ids=tuple(smol.eos_token_ids)) for h in heads]  # fmt: skip
    before = state.loop.engine.cache.stats.hit_tokens
    backend = EngineBackend(state.loop.engine, stream=state.loop.stream)
    outs = asyncio.run(backend.complete(reqs))
    for w, o in zip(want, outs):
        cut = w[: w.index(stop) + 1] if stop in w else w
        assert o.tokens == cut and o.finish_reason == ("stop" if stop in w else "length")
    assert state.loop.engine.cache.stats.hit_tokens > before
