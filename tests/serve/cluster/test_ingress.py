"""The `--ray` ingress and replica without a cluster: the ASGI bridge a replica runs requests
through answers as the HTTP server does, and the ingress retries a replica that died before
anything reached the client but ends a started stream with an OpenAI error event."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.helpers.cluster import MODEL


def test_asgi_call_answers_as_the_http_server(tiny_served):
    from plait.serve.app import create_app
    from plait.serve.cluster.replica import asgi_call

    state, url = tiny_served
    app = create_app(state)
    body = {"model": MODEL, "prompt": [5, 6, 7], "max_tokens": 6, "temperature": 0}

    async def call(b: dict) -> tuple[dict, bytes]:
        items = [x async for x in asgi_call(app, "POST", "/v1/completions", json.dumps(b).encode())]
        return items[0], b"".join(items[1:])  # type: ignore[arg-type]

    head, raw = asyncio.run(call(body))
    want = httpx.post(url + "/completions", json=body).json()
    assert head["status"] == 200 and json.loads(raw)["choices"] == want["choices"]
    head, raw = asyncio.run(call({**body, "stream": True}))
    events = [json.loads(e[6:]) for e in raw.decode().split("\n\n") if e.startswith("data: {")]
    assert "".join(e["choices"][0]["text"] for e in events) == want["choices"][0]["text"]
    head, raw = asyncio.run(call({**body, "n": 99}))
    assert head["status"] == 400 and "lower n" in json.loads(raw)["error"]["message"]


class _Gen:
    """A replica call's stream: `items`, an exception instance raised where it stands."""

    def __init__(self, items: list) -> None:
        self.items, self.cancelled = list(items), False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.items:
            raise StopAsyncIteration
        item = self.items.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def cancel(self) -> None:
        self.cancelled = True


class _Handle:
    def __init__(self, scripts: list[list]) -> None:
        self.scripts, self.calls = scripts, []
        self.handle = self

    def options(self, **kw):
        return self

    def remote(self, method, path, body, route=None, **kw):
        self.calls.append(route)
        return _Gen(self.scripts[len(self.calls) - 1])


def _ingress(scripts: list[list]):
    from plait.serve.cluster.ingress import IngressState, create_ingress
    from tests.helpers.checkpoints import tiny_tokenizer

    state = IngressState(handle=_Handle(scripts), deployment="x/y", model_name=MODEL,
                         context=8192, tokenizer=tiny_tokenizer(), block_tokens=4)  # fmt: skip
    return state, create_ingress(state)


async def _post(app, body: dict) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.post("/v1/completions", json=body)


def test_ingress_retries_before_output_and_reports_a_death_mid_stream():
    pytest.importorskip("ray")
    from ray.exceptions import ActorDiedError

    sse = {"status": 200, "headers": [("content-type", "text/event-stream")], "replica": "r2"}
    whole = {"status": 200, "headers": [("content-type", "application/json")], "replica": "r2"}
    # a whole response: the first replica dies mid-way, the second answers
    state, app = _ingress([[whole, ActorDiedError()], [whole, b'{"ok": 1}']])
    r = asyncio.run(_post(app, {"model": MODEL, "prompt": "abcdefgh"}))
    assert r.json() == {"ok": 1} and r.headers["x-plait-replica"] == "r2"
    assert state.retries == 1 and state.handle.calls[0] == state.handle.calls[1] != []
    # a stream that already sent a chunk: an error event names the failure, then [DONE]
    state, app = _ingress([[sse, b"data: {}\n\n", ActorDiedError()]])
    r = asyncio.run(_post(app, {"model": MODEL, "prompt": "x", "stream": True}))
    events = r.text.split("\n\n")
    err = json.loads(events[1][6:])["error"]
    assert (
        err["code"] == "replica_died" and "retry" in err["message"] and events[2] == "data: [DONE]"
    )
    # every try lost: a 503 naming the cause
    state, app = _ingress([[ActorDiedError()]] * 4)
    r = asyncio.run(_post(app, {"model": MODEL, "prompt": "x"}))
    assert r.status_code == 503 and r.json()["error"]["code"] == "replica_died"
    assert state.replica_failures == 4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--replicas", "0"], "replicas must be >= 1"),
        (["--replica-cpus", "-1"], "must be >= 0"),
        (["--port", "70000"], "--port must be in 0..65535"),
    ],
)
def test_bad_ray_settings_are_one_line_before_ray_starts(args, fragment, capsys):
    pytest.importorskip("ray.serve")
    from plait.cli import main

    assert main(["serve", "--ray", "--port", "0", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0]
