"""`plait serve` as a process: the CLI starts it; SIGTERM lets a stream in flight finish, then
the process exits 0 and the port closes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers.serve import require

pytestmark = [pytest.mark.model, pytest.mark.server]


def test_sigterm_drains_a_stream_then_exits():
    require("smollm2-135m")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "plait.cli", "serve", "--model", "smollm2-135m", "--port",
           str(port), "--kv-budget-tokens", "4096", "--served-model-name", "smol"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PLAIT_KERNELS": os.environ.get("PLAIT_KERNELS", "1")})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "plait serve did not come up"
            time.sleep(0.2)
        body = {"model": "smol", "prompt": "Once upon a time", "max_tokens": 40,
                "temperature": 0, "ignore_eos": True, "stream": True}  # fmt: skip
        chunks = []
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                if not chunks:
                    proc.send_signal(signal.SIGTERM)  # mid-stream
                chunks.append(line[len("data: ") :])
        assert chunks[-1] == "[DONE]"
        finishes = [json.loads(c)["choices"][0]["finish_reason"] for c in chunks[:-1]]
        assert finishes[-1] == "length" and len(finishes) == 40
        assert proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--port", "70000"], "--port must be in 0..65535"),
        (["--kv-budget-tokens", "0"], "kv_budget_tokens must be >= 1"),
        (["--max-rows", "-1"], "max_rows must be >= 1"),
        (["--port", "{busy}"], "pick a free --port"),
    ],
)
def test_cli_bad_input_is_one_line_before_loading(args, fragment, capsys):
    from plait.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        args = [a.replace("{busy}", str(busy.getsockname()[1])) for a in args]
        assert main(["serve", "--model", "no-such-model", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("plait serve: error:") and fragment in err[0]
