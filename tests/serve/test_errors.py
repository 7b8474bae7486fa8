"""Bad input gets an OpenAI-shaped error naming the fix (status, shape, the field the client
sent), and the server keeps serving after every row: 0 5xx on bad bodies."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.serve import MODEL, json_values

pytestmark = [pytest.mark.model, pytest.mark.server]


def _post(
    url: str, path: str, body: object | None = None, raw: bytes | None = None
) -> httpx.Response:
    if raw is not None:
        return httpx.post(url + path, content=raw, headers={"content-type": "application/json"})
    return httpx.post(url + path, json=body, timeout=60)


def _still_serving(url: str) -> None:
    assert httpx.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}
    r = _post(url, "/completions", {"model": MODEL, "prompt": "Hi", "max_tokens": 1})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1


CHAT = [{"role": "user", "content": "x"}]


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
    # issue 22: OpenAI's bounds
    ("/completions", {"model": MODEL, "prompt": "x", "seed": 2**64}, 400, "signed 64-bit"),
    ("/completions", {"model": MODEL, "prompt": "x", "seed": -(2**63) - 1}, 400, "signed 64-bit"),
    ("/completions", {"model": MODEL, "prompt": "x", "n": 0}, 400, "'n' must be between 1"),
    ("/chat/completions", {"model": MODEL, "messages": CHAT, "n": 0}, 400, "'n' must be between 1"),
    ("/chat/completions", {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}, 400,
     "messages[0].role is 'wizard'"),
    ("/completions", {"model": MODEL, "prompt": "x", "stop": "s" * 100_000}, 400,
     "a stop string has 100000 characters"),
    ("/completions", {"model": MODEL, "prompt": "x", "stop": ["a"] * 9}, 400, "at most 8 stop"),
    ("/completions", {"model": MODEL, "prompt": "x", "stop_token_ids": [1] * 300}, 400,
     "at most 256 'stop_token_ids'"),
    ("/chat/completions", {"model": MODEL, "messages": CHAT, "threads": {"max_total_tokens": "x"}},
     400, "'threads.max_total_tokens' must be a 64-bit integer, got str 'x'"),
    ("/chat/completions", {"model": MODEL, "messages": CHAT, "hogwild": {"workers": "2"}}, 400,
     "'hogwild.workers' must be a 64-bit integer"),
    ("/chat/completions", {"model": MODEL, "messages": CHAT, "hogwild": {"seed": 2**64}}, 400,
     "'hogwild.seed' must be a 64-bit integer or null"),
    ("/chat/completions", {"model": MODEL, "messages": CHAT, "hogwild": {}, "threads": {}}, 400,
     "either 'hogwild' or 'threads'"),
]  # fmt: skip
PARAMS = {  # the `param` of rows whose field is not the message's first word
    "a stop string has": "stop", "signed 64-bit": "seed", "role is": "messages",
    "threads.max_total_tokens": "threads", "could not be tokenised": "prompt",
}  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "fragment"), CASES)
def test_bad_request_is_an_openai_error(served, path, body, status, fragment):
    _, url = served
    r = _post(url, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}
    assert "\n" not in err["message"] and len(err["message"]) < 600
    for key, param in PARAMS.items():
        assert key not in fragment or err["param"] == param
    _still_serving(url)


DEEP = b"[" * 10_000 + b"]" * 10_000
RAW = [
    # (method, path, content type, raw body, status, fragment of the message)
    ("POST", "/completions", "application/json", b'{"model": "smol", "prompt": ' + DEEP + b"}",
     400, "nests deeper than 64"),
    ("POST", "/completions", "application/json", b'{"model": "smol", "prompt": "x", "junk": '
     + DEEP.replace(b"[", b'{"a":[') .replace(b"]", b"]}") + b"}", 400, "nests deeper than 64"),
    ("POST", "/completions", "application/json", b'{"model": "smol", "prompt": "x", '
     b'"temperature": NaN}', 400, "NaN is not JSON"),
    ("POST", "/completions", "application/json", b'{"model": "smol", "prompt": "\xff\xfe"}',
     400, "not valid JSON"),
    ("POST", "/completions", "text/plain", b'{"model": "smol", "prompt": "x"}', 415,
     "Content-Type: application/json"),
    ("POST", "/chat/completions", None, b'{"model": "smol", "messages": []}', 415,
     "Content-Type is 'missing'"),
    ("POST", "/completions", "application/json", b'{"model": "smol", "prompt": "\\ud800"}',
     400, "could not be tokenised"),
    ("GET", "/completions", None, b"", 405, "GET is not allowed on /v1/completions; use POST"),
    ("PUT", "/chat/completions", "application/json", b"{}", 405, "use POST"),
    ("POST", "/models", "application/json", b"{}", 405, "POST is not allowed on /v1/models"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "ctype", "raw", "status", "fragment"), RAW)
def test_bad_raw_request_is_an_openai_error(served, method, path, ctype, raw, status, fragment):
    _, url = served
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.request(method, url + path, content=raw, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}
    if status == 405:
        assert "POST" in r.headers["allow"] or "GET" in r.headers["allow"]
    _still_serving(url)


def test_param_names_the_field_the_client_sent(served):
    _, url = served
    r = _post(url, "/completions", {"model": MODEL, "prompt": [5] * 9000})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    r = _post(url, "/chat/completions", {"model": MODEL, "messages": [{"role": "user",
              "content": "hi " * 9000}]})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = _post(url, "/chat/completions", {"model": MODEL, "messages": CHAT,
              "max_completion_tokens": 8190})  # fmt: skip
    err = r.json()["error"]
    assert r.status_code == 400 and err["param"] == "max_completion_tokens"
    assert "lower max_completion_tokens" in err["message"]


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


HTTP_FIELDS = [  # not max_tokens / extensions: a valid random value could run for minutes
    "prompt", "messages", "n", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids",
    "stream", "stream_options", "logprobs", "top_logprobs", "echo", "suffix", "best_of",
    "ignore_eos", "include_stop_str_in_output", "return_tokens_as_token_ids", "tools", "model",
]  # fmt: skip


@given(
    path=st.sampled_from(["/completions", "/chat/completions"]),
    fields=st.dictionaries(st.sampled_from(HTTP_FIELDS), json_values, max_size=3),
)
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_bodies_never_get_a_5xx(served, path, fields):
    _, url = served
    body = {"model": MODEL, "prompt": "Hi", "messages": CHAT, "max_tokens": 1, **fields}
    raw = json.dumps(body).encode("utf-8", "surrogatepass")
    r = httpx.post(url + path, content=raw, headers={"content-type": "application/json"},
                   timeout=60)  # fmt: skip
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.ray
@pytest.mark.parametrize(("path", "body", "status", "fragment"), CASES)
def test_bad_request_is_an_openai_error_through_ray(ray_served, path, body, status, fragment):
    """The same errors from `plait serve --ray` (the replicas run the same validation)."""
    _, url, _, _ = ray_served
    r = _post(url, path, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}


@pytest.mark.ray
@pytest.mark.parametrize(("method", "path", "ctype", "raw", "status", "fragment"), RAW)
def test_bad_raw_request_is_an_openai_error_through_ray(
    ray_served, method, path, ctype, raw, status, fragment
):
    _, url, _, _ = ray_served
    headers = {"content-type": ctype} if ctype else {}
    r = httpx.request(method, url + path, content=raw, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and set(err) == {"message", "type", "param", "code"}
