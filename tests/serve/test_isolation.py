"""One request never harms another through the server: a 2**64 seed (400 at the edge) and an
injected engine fault (500 for that request only) arrive while three valid requests are in
flight; those complete with the text they get alone, and the KV goes back to idle. /health
answers while a large prompt is tokenised; a client gone mid-body leaves no traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from urllib.parse import urlparse

import httpx
import pytest
import torch

from plait.runtime.engine import scheduler as scheduler_module
from plait.runtime.sampling import Sampler, SamplingParams
from tests.helpers.serve import MODEL, metrics, wait_idle

pytestmark = [pytest.mark.model, pytest.mark.server]

BOOM = 424242  # the seed whose sampler the test makes fail


class FaultySampler(Sampler):
    def __call__(self, logits: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        raise RuntimeError("injected: the sampler failed")


def _factory(params: list[SamplingParams]) -> Sampler:
    return FaultySampler(params) if params[0].seed == BOOM else Sampler(params)


def _valid(i: int) -> dict:
    return {"model": MODEL, "prompt": f"Story {i}: once upon a time", "max_tokens": 32,
            "temperature": 0, "ignore_eos": True}  # fmt: skip


def test_bad_neighbours_leave_valid_requests_unharmed(served, monkeypatch):
    state, url = served
    solo = [httpx.post(url + "/completions", json=_valid(i), timeout=120).json() for i in range(3)]
    before = metrics(url)
    monkeypatch.setattr(scheduler_module, "Sampler", _factory)

    async def main() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as c:
            valid = [asyncio.create_task(c.post(url + "/completions", json=_valid(i)))
                     for i in range(3)]  # fmt: skip
            deadline = time.monotonic() + 30
            while state.loop.snapshot.running < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert state.loop.snapshot.running == 3, "the valid requests are not in flight"
            seed = await c.post(url + "/completions", json={**_valid(9), "seed": 2**64})
            fault = await c.post(url + "/completions", json={**_valid(8), "seed": BOOM,
                                                             "temperature": 1.0})  # fmt: skip
            assert not all(t.done() for t in valid), "the valid requests ended too soon"
            return list(await asyncio.gather(*valid)), seed, fault

    valid, seed, fault = asyncio.run(main())
    assert seed.status_code == 400 and seed.json()["error"]["param"] == "seed"
    err = fault.json()["error"]
    assert fault.status_code == 500 and "injected" in err["message"]
    assert err["type"] == "server_error" and set(err) == {"message", "type", "param", "code"}
    for got, want in zip(valid, solo):
        assert got.status_code == 200
        c, w = got.json()["choices"][0], want["choices"][0]
        assert (c["text"], c["finish_reason"]) == (w["text"], "length")
    m = wait_idle(url)
    assert (
        m["kv_request_tokens"] == 0
        and m["failed_requests_total"] == before["failed_requests_total"] + 1
    )
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/completions", "/chat/completions"])
def test_a_fault_mid_stream_is_an_error_event_for_that_stream_only(served, monkeypatch, path):
    _, url = served
    monkeypatch.setattr(scheduler_module, "Sampler", _factory)
    body = {**_valid(7), "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "seed": BOOM, "temperature": 1.0}  # fmt: skip
    with httpx.stream("POST", url + path, json=body, timeout=120) as r:
        assert r.status_code in (200, 500)
        text = r.read().decode()
    assert "injected" in text and "server_error" in text
    if r.status_code == 200:  # the first event came before the fault: an error event, [DONE]
        assert text.rstrip().endswith("data: [DONE]")
    ok = httpx.post(url + "/completions", json=_valid(1), timeout=120)
    assert ok.status_code == 200 and ok.json()["choices"][0]["finish_reason"] == "length"
    assert wait_idle(url)["kv_request_tokens"] == 0


def test_health_answers_while_a_large_prompt_is_tokenised(served):
    _, url = served
    big = "The quick brown fox jumps over the lazy dog. " * 23_000  # ~1 MB, ~230k tokens
    answer: list[httpx.Response] = []
    took: list[float] = []

    def send() -> None:
        t = time.perf_counter()
        body = {"model": MODEL, "prompt": big, "max_tokens": 1}
        answer.append(httpx.post(url + "/completions", json=body, timeout=120))
        took.append(time.perf_counter() - t)

    sender = threading.Thread(target=send)
    sender.start()
    waits = []
    with httpx.Client(timeout=30) as client:
        while sender.is_alive():
            t = time.perf_counter()
            assert client.get(url.removesuffix("/v1") + "/health").status_code == 200
            waits.append(time.perf_counter() - t)
            time.sleep(0.02)
    sender.join()
    err = answer[0].json()["error"]
    assert answer[0].status_code == 400 and err["param"] == "prompt"
    assert "shorten the prompt" in err["message"]
    print(f"large prompt answered in {took[0]:.2f} s; /health: {len(waits)} calls, "
          f"max {max(waits):.3f} s")  # fmt: skip
    assert max(waits) < 1.0 and len(waits) >= 3


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_client_gone_mid_body_logs_no_traceback(served):
    _, url = served
    u = urlparse(url)
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "plait.serve", "")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        before = metrics(url)
        with socket.create_connection((u.hostname, u.port)) as sock:
            sock.sendall(
                b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100000\r\n\r\n{"model": "smol", "prompt": "' + b"x" * 1000
            )
            time.sleep(0.3)
        time.sleep(0.5)
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
    noisy = [r.getMessage() for r in handler.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, noisy
    assert metrics(url)["requests_running"] == before["requests_running"] == 0
    r = httpx.post(url + "/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 1})
    assert r.status_code == 200
