"""Bad input gets an OpenAI-shaped error naming the fix, and the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.helpers.serve import MODEL

pytestmark = [pytest.mark.model, pytest.mark.server]


def _post(
    url: str, path: str, body: object | None = None, raw: bytes | None = None
) -> httpx.Response:
    if raw is not None:
        return httpx.post(url + path, content=raw, headers={"content-type": "application/json"})
    return httpx.post(url + path, json=body)


CASES = [
    # (path, body, status, fragment of the message)
    ("/completions", {"prompt": "x"}, 404, "does not exist; this server serves 'smol'"),
    ("/completions", {"model": "gpt-4", "prompt": "x"}, 404, "GET /v1/models"),
    ("/completions", {"model": MODEL}, 400, "'prompt' is required"),
    ("/completions", {"model": MODEL, "prompt": "x", "max_tokens": 0}, 400, "lower max_tokens"),
    ("/completions", {"model": MODEL, "prompt": "x", "max_tokens": 10**9}, 400, "between 1 and"),
    (
        "/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": 8192},
        400,
        "lower max_tokens to at most 8191",
    ),
    (
        "/completions",
        {"model": MODEL, "prompt": "x", "temperature": "hot"},
        400,
        "'temperature' must be a number",
    ),
    (
        "/completions",
        {"model": MODEL, "prompt": "x", "max_tokens": "5"},
        400,
        "'max_tokens' must be an integer",
    ),
    ("/completions", {"model": MODEL, "prompt": "x", "n": 5}, 400, "lower n"),
    (
        "/completions",
        {"model": MODEL, "prompt": "x", "stream": "yes"},
        400,
        "'stream' must be a boolean",
    ),
    ("/completions", {"model": MODEL, "prompt": [1, 2, -3]}, 400, "token ids in [0,"),
    ("/completions", {"model": MODEL, "prompt": "x", "stop": 5}, 400, "'stop' must be a string"),
    ("/completions", {"model": MODEL, "prompt": "x", "presence_penalty": 1}, 400, "leave it at 0"),
    ("/completions", {"model": MODEL, "prompt": [5] * 9000}, 400, "shorten the prompt"),
    ("/chat/completions", {"model": MODEL, "messages": []}, 400, "non-empty list"),
    ("/chat/completions", {"model": MODEL, "messages": [{"role": "user"}]}, 400, "content must be"),
    (
        "/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2},
        400,
        "needs 'logprobs': true",
    ),  # fmt: skip
    ("/nope", {"model": MODEL}, 404, "no route POST /v1/nope"),
]


@pytest.mark.parametrize(("path", "body", "status", "fragment"), CASES)
def test_bad_request_is_an_openai_error(served, path, body, status, fragment):
    _, url = served
    r = _post(url, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}


def test_malformed_json_kv_overflow_body_limit_429_503_and_still_serving(served):
    state, url = served
    r = _post(url, "/completions", raw=b'{"model": "smol", "prompt": ')
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
    r = _post(url, "/completions", raw=b"[1, 2]")
    assert r.status_code == 400 and "JSON object" in r.json()["error"]["message"]
    # 4 samples x 8000 tokens can never fit the 16384-slot KV budget
    r = _post(url, "/completions", {"model": MODEL, "prompt": "x", "n": 4, "max_tokens": 8000})
    assert r.status_code == 413 and "raise the KV budget" in r.json()["error"]["message"]
    limit, state.max_body_bytes = state.max_body_bytes, 100
    try:
        r = _post(url, "/completions", {"model": MODEL, "prompt": "x" * 200})
        assert r.status_code == 413 and "send a shorter prompt" in r.json()["error"]["message"]
    finally:
        state.max_body_bytes = limit
    waiting, state.max_waiting = state.max_waiting, 0
    try:
        r = _post(url, "/completions", {"model": MODEL, "prompt": "x"})
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    finally:
        state.max_waiting = waiting
    state.draining = True
    try:
        r = _post(url, "/completions", {"model": MODEL, "prompt": "x"})
        assert r.status_code == 503
        assert httpx.get(url.removesuffix("/v1") + "/health").status_code == 503
    finally:
        state.draining = False
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="lower n"):
        client.completions.create(model=MODEL, prompt="x", n=9)
    ok = client.completions.create(model=MODEL, prompt="Hello", max_tokens=2, temperature=0)
    assert ok.usage.completion_tokens == 2
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}


@pytest.mark.ray
@pytest.mark.parametrize(("path", "body", "status", "fragment"), CASES)
def test_bad_request_is_an_openai_error_through_ray(ray_served, path, body, status, fragment):
    """The same errors from `plait serve --ray` (the replicas run the same validation)."""
    _, url, _, _ = ray_served
    r = _post(url, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}
