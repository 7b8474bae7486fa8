"""plait serve through the real `openai` client: completions, chat, streaming, n, stop strings,
seeds, logprobs, and greedy equality with `generate` and with the engine driven directly."""

from __future__ import annotations

import openai
import pytest

from plait.runtime.engine import Engine, EngineRequest
from plait.runtime.generate import greedy
from tests.helpers.engine import reference_greedy
from tests.helpers.serve import MODEL, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def client(served):
    _, url = served
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)


def test_models_and_greedy_completion_matches_generate_and_engine(served, client, smol):
    state, _ = served
    assert [m.id for m in client.models.list().data] == [MODEL]
    ids = smol.tokenizer.encode("The three primary colours are", add_special_tokens=False)
    r = client.completions.create(model=MODEL, prompt=ids, max_tokens=12, temperature=0)
    want = reference_greedy(smol.model, ids, 12)
    assert greedy(smol.model, ids, 12) == want  # generate (the engine) == the bare runner loop
    assert r.choices[0].text == smol.tokenizer.decode(want, skip_special_tokens=True)
    assert r.usage.prompt_tokens == len(ids) and r.usage.completion_tokens == 12
    assert r.choices[0].finish_reason == "length"
    others = [EngineRequest(prompt=smol.chat_prompt_ids(q), max_tokens=6 + k)
              for k, q in enumerate(["Hi", "Name a fruit.", "2 + 2?", "Say yes.", "Red or blue?",
                                     "Count to 3.", "A colour?"])]  # fmt: skip
    engine = Engine(smol.model, smol.tokenizer)
    alone = engine.generate([EngineRequest(prompt=ids, max_tokens=12)])[0][0]
    batched = engine.generate([*others[:3], EngineRequest(prompt=ids, max_tokens=12), *others[3:]])
    assert alone == batched[3][0] == want  # engine alone == engine with 7 others
    text = client.completions.create(model=MODEL, prompt="The three primary colours are",
                                     max_tokens=12, temperature=0)  # fmt: skip
    assert text.choices[0].text == r.choices[0].text


def test_chat_stream_equals_whole_and_reports_usage(client):
    msgs = [{"role": "user", "content": "Name three animals."}]
    whole = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=20, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model=MODEL, messages=msgs, max_tokens=20, temperature=0, stream=True,
            stream_options={"include_usage": True},
        )
    )  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and text
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens <= 20
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == 32  # one 32-token block


def test_n3_seeded_sampling_reproduces(client):
    kw = dict(model=MODEL, prompt="Once upon a time", max_tokens=10, n=3, temperature=1.0)
    a = client.completions.create(seed=11, **kw)
    b = client.completions.create(seed=11, **kw)
    c = client.completions.create(seed=12, **kw)
    texts = [ch.text for ch in sorted(a.choices, key=lambda ch: ch.index)]
    assert texts == [ch.text for ch in sorted(b.choices, key=lambda ch: ch.index)]
    assert len(set(texts)) > 1 and texts != [
        ch.text for ch in sorted(c.choices, key=lambda ch: ch.index)
    ]
    assert a.usage.completion_tokens == 30 and a.usage.prompt_tokens == 4
    g = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=10, n=3,
                                  temperature=0)  # fmt: skip
    assert len({ch.text for ch in g.choices}) == 1


def test_stop_strings_cut_the_text(client):
    base = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=16, temperature=0
    )
    full = base.choices[0].text
    stop = full.strip()[:2].strip() or full[:2]
    r = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=16,
                                  temperature=0, stop=[stop, "never-there"])  # fmt: skip
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[: full.index(stop)]
    assert (r.choices[0].model_extra or {}).get("stop_reason") == stop
    stream = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=16,
                                       temperature=0, stop=stop, stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in stream) == full[: full.index(stop)]


def test_logprobs_and_batched_prompts(client):
    r = client.completions.create(model=MODEL, prompt=["Paris is in", "Rome is in"], max_tokens=3,
                                  temperature=0, logprobs=2)  # fmt: skip
    assert [c.index for c in r.choices] == [0, 1]
    for c in r.choices:
        lp = c.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == 3 and "".join(lp.tokens) == c.text
        assert all(len(t) == 2 and max(t.values()) <= 0 for t in lp.top_logprobs)
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2, temperature=0, logprobs=True, top_logprobs=1)  # fmt: skip
    assert len(chat.choices[0].logprobs.content) == 2


def test_threadweaver_openai_backend_against_plait_serve(served, smol):
    """plait's own ThreadWeaver OpenAI backend (token-id mode) gets exactly the greedy ids."""
    import asyncio

    from plait.threads.inference.backend_api import CompletionRequest
    from plait.threads.inference.openai_backend import OpenAIBackend, OpenAIConfig

    _, url = served
    tok = smol.tokenizer
    eos = tuple(smol.eos_token_ids)

    class Fmt:  # the backend needs decode/encode only in token-id mode
        def decode(self, ids):
            return tok.decode(ids, skip_special_tokens=False)

        def encode(self, text):
            return tok.encode(text, add_special_tokens=False)

    engine = OpenAIBackend(OpenAIConfig(base_url=url, model=MODEL), Fmt())  # type: ignore[arg-type]
    prompt = smol.chat_prompt_ids("List three fruits, one per line.")
    want = reference_greedy(smol.model, prompt, 40)
    nl = want[next(i for i, t in enumerate(want) if "\n" in tok.decode([t]))]
    reqs = [
        CompletionRequest(context=prompt, max_tokens=5, eos_token_ids=eos),
        CompletionRequest(context=prompt, max_tokens=40, stop_token_ids=(nl,), eos_token_ids=eos),
    ]
    short, line = asyncio.run(engine.complete(reqs))
    assert short.tokens == want[:5] and short.finish_reason == "length"
    assert line.finish_reason == "stop" and line.tokens == want[: want.index(nl) + 1]
    wait_idle(url)
