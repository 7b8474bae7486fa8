"""OpenAI-compatible backend against a scripted local HTTP stub (vLLM- and llama.cpp-shaped)."""

from __future__ import annotations

import asyncio

import pytest

from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.inference.backend_api import CompletionRequest
from plait.threads.inference.openai_backend import (
    OpenAIBackend,
    OpenAIConfig,
    ServerError,
)
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig
from plait.threads.training.units import extract_units
from tests.helpers.threads import vllm_like


def test_ids_mode_round_trip_through_orchestrator(char_fmt, stub_server):
    f = char_fmt
    parts = ["go\n", BlockSpec(outlines=["a", "b"], threads=["xx", "y"]), "\nend"]
    prompt = f.encode("Q\n")
    ids, gen = encode_pieces(f, parts)
    target = prompt + ids

    def script(ctx, body):
        if body["stop_token_ids"] == [f.tags.thread_end]:
            n = f.decode(ctx[-2:-1])
            return f.encode(f" {parts[1].threads[int(n) - 1]}\n</Thread>")
        return target[len(ctx) :] + [264]

    server = stub_server(vllm_like(f, script))
    engine = OpenAIBackend(OpenAIConfig(base_url=server.url), f)
    run = Orchestrator(engine, f, OrchestratorConfig(seed=7)).run_sync(prompt)
    assert run.tokens == target + [264] and run.stop_reason == "eos"
    units = [u for u in extract_units(run.tokens, f, prompt_len=len(prompt)) if u.kind != "full"]
    assert [c.context for c in run.calls] == [u.context for u in units]
    bodies = [b for _, b in server.calls]
    threads = [b for b in bodies if b["stop_token_ids"] == [f.tags.thread_end]]  # sent concurrently
    assert sorted(b["prompt"] for b in threads) == sorted(
        u.context for u in units if u.kind == "thread"
    )
    assert threads[0]["seed"] != threads[1]["seed"]
    assert run.calls[1].completion.logprobs == [-0.5] * len(run.calls[1].completion.tokens)


def test_length_and_eos(char_fmt, stub_server):
    f = char_fmt
    server = stub_server(vllm_like(f, lambda ctx, body: f.encode("abcdef") + [264]))
    engine = OpenAIBackend(OpenAIConfig(base_url=server.url), f)
    short, full = asyncio.run(engine.complete([
        CompletionRequest(context=[65], max_tokens=3, eos_token_ids=(264,)),
        CompletionRequest(context=[65], max_tokens=30, eos_token_ids=(264,)),
    ]))  # fmt: skip
    assert short.tokens == f.encode("abc") and short.finish_reason == "length"
    assert full.tokens == f.encode("abcdef") + [264] and full.finish_reason == "eos"


def test_text_mode_uses_hidden_token_count(char_fmt, stub_server):
    """llama-cpp-python shape: no stop_reason; a cut stop string leaves tokens hidden."""
    f = char_fmt

    def handler(path, body):
        assert isinstance(body["prompt"], str) and body["stop"] == ["</Thread>"]
        text = body["prompt"][-1]  # the last prompt char decides the scenario
        if text == "l":  # llama-cpp-python: the stop string is cut from the text, not the tokens
            return {"choices": [{"text": " ok", "finish_reason": "stop",
                                 "logprobs": {"tokens": [" ", "o", "k", "</Thread>"]}}],
                    "usage": {"completion_tokens": 4}}  # fmt: skip
        if text == "s":  # stop string fired: 3 tokens shown, 4 generated
            return {
                "choices": [
                    {
                        "text": " ok",
                        "finish_reason": "stop",
                        "logprobs": {"tokens": [" ", "o", "k"]},
                    }
                ],
                "usage": {"completion_tokens": 4},
            }
        return {"choices": [{"text": " no", "finish_reason": "stop", "logprobs": {"tokens": [" ", "n", "o"]}}],
                "usage": {"completion_tokens": 3}}  # fmt: skip

    server = stub_server(handler)
    engine = OpenAIBackend(OpenAIConfig(base_url=server.url, prompt_mode="text"), f)
    reqs = [CompletionRequest(context=f.encode(p), max_tokens=9, stop_token_ids=(f.tags.thread_end,),
                              eos_token_ids=(264,)) for p in ("s", "e", "l")]  # fmt: skip
    stop, eos, cut = asyncio.run(engine.complete(reqs))
    assert cut.tokens == f.encode(" ok") + [f.tags.thread_end] and cut.finish_reason == "stop"
    assert stop.tokens == f.encode(" ok") + [f.tags.thread_end] and stop.finish_reason == "stop"
    assert eos.tokens == f.encode(" no") + [264] and eos.finish_reason == "eos"


def test_http_error_names_fix(char_fmt, stub_server):
    server = stub_server(lambda path, body: 1 / 0)
    engine = OpenAIBackend(OpenAIConfig(base_url=server.url, retries=0), char_fmt)
    with pytest.raises(ServerError, match="prompt-mode"):
        asyncio.run(engine.complete([CompletionRequest(context=[65], max_tokens=2)]))


def test_config_validation():
    with pytest.raises(ValueError, match="http"):
        OpenAIConfig(base_url="localhost:8000")
