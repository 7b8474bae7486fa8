"""Helpers of the `plait serve` tests: the served model's name, a skip for a bundled model that
is not installed, the server's Prometheus metrics (and waiting until it is idle), and random JSON
values for fuzzing request bodies."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import strategies as st

from plait.runtime.loading.bundled import BUNDLED, bundled_status

MODEL = "smol"


def require(name: str) -> None:
    if not bundled_status(BUNDLED[name]).installed:
        pytest.skip(f"{name} is not installed ({BUNDLED[name].install_command()})")


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


scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", "x", "user", "wizard", "[{\"", "\\", "\ud800", "a" * 600])
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)  # fmt: skip
