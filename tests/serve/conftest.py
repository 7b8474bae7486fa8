"""A real `plait serve` on 127.0.0.1 (uvicorn in a thread) over SmolLM2-135M (fp32)."""

from __future__ import annotations

import time

import httpx
import pytest

from plait.runtime.engine import EngineConfig
from plait.runtime.loading.bundled import BUNDLED, bundled_status

MODEL = "smol"


def require(name: str) -> None:
    if not bundled_status(BUNDLED[name]).installed:
        pytest.skip(f"{name} is not installed ({BUNDLED[name].install_command()})")


@pytest.fixture(scope="session")
def smol():
    require("smollm2-135m")
    from plait.runtime.loader import load_model

    return load_model("smollm2-135m", dtype="fp32")


@pytest.fixture(scope="module")
def served(smol):
    """(state, base_url) of a server shared by a test module."""
    from plait.serve.server import build_state, start_in_thread

    config = EngineConfig(kv_budget_tokens=16384, max_rows=32, step_tokens=256, block_tokens=32)
    state = build_state(smol, config, MODEL, max_n=4)
    server, url = start_in_thread(state)
    yield state, url
    server.should_exit = True
    state.loop.stop(timeout=10)


def metrics(url: str) -> dict[str, float]:
    text = httpx.get(url.removesuffix("/v1") + "/metrics").text
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.split()
            out[name.removeprefix("plait_")] = float(value)
    return out


def wait_idle(url: str, timeout: float = 20.0) -> dict[str, float]:
    """Metrics once no request is running or waiting (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        m = metrics(url)
        if m["requests_running"] == 0 and m["requests_waiting"] == 0:
            return m
        if time.monotonic() > deadline:
            pytest.fail(f"the engine did not go idle: {m}")
        time.sleep(0.05)
