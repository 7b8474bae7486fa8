"""A real `plait serve` on 127.0.0.1 (uvicorn in a thread) over SmolLM2-135M (fp32)."""

from __future__ import annotations

import pytest

from plait.runtime.engine import EngineConfig
from tests.helpers.serve import MODEL, require


@pytest.fixture(scope="session")
def smol():
    require("smollm2-135m")
    from plait.runtime.loading.loader import load_model

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
