"""The `hogwild` and `threads` chat extensions end to end through the openai client."""

from __future__ import annotations

import openai
import pytest

from plait.hogwild import HogwildConfig, HogwildEngine
from tests.serve.conftest import MODEL, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]

PROBLEM = "A farmer has 12 cows and buys 5 more. How many cows does he have?"
SPEC = {"workers": 2, "budgets": [6, 12], "finisher_max_tokens": 4}


def test_hogwild_extension_matches_the_hogwild_engine(served, smol):
    _, url = served
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    msgs = [{"role": "user", "content": PROBLEM}]
    r = client.chat.completions.create(model=MODEL, messages=msgs, temperature=0,
                                       extra_body={"hogwild": SPEC})  # fmt: skip
    got = r.model_extra["hogwild"]
    cfg = HogwildConfig(workers=2, budgets=(6, 12), finisher_max_tokens=4)
    want = HogwildEngine(smol.model, smol.tokenizer, cfg).solve(PROBLEM)
    assert [s["budget"] for s in got["snapshots"]] == [6, 12]
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
