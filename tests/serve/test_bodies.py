"""The request parser without a model: the depth check against its twin (the depth of the parsed
value), strict JSON, typed extension fields, and hypothesis fuzzing of every field of both
endpoints' bodies (random JSON values): the answer is the parsed request or a one-line 4xx
`APIError`, never another exception."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.serve.bodies import MAX_DEPTH, check_content_type, parse_json, too_deep
from plait.serve.hogwild_ext import hogwild_config
from plait.serve.protocol import (
    APIError,
    Limits,
    chat_messages,
    check_length,
    completion_prompts,
    gen_params,
)
from plait.serve.threads_ext import orchestrator_config
from tests.helpers.serve import json_values

LIMITS = Limits(context=512, vocab=1000, max_n=4)

COMMON = [
    "model", "n", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids", "stream",
    "stream_options", "presence_penalty", "frequency_penalty", "best_of", "ignore_eos",
    "include_stop_str_in_output", "return_tokens_as_token_ids", "max_tokens", "logprobs",
]  # fmt: skip
COMPLETION_FIELDS = [*COMMON, "prompt", "echo", "suffix"]
CHAT_FIELDS = [*COMMON, "messages", "max_completion_tokens", "top_logprobs", "hogwild", "threads"]
HOGWILD_KEYS = ["workers", "budgets", "names", "layout", "seed", "task", "instant", "loop_guard"]
THREADS_KEYS = ["max_total_tokens", "max_threads", "max_thread_tokens", "max_blocks", "max_calls"]


def _depth(value: Any) -> int:
    """The twin: nesting depth of a parsed JSON value (recursive, obviously correct)."""
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _encode(text: str) -> list[int]:
    return [ord(c) % 1000 for c in text.encode("utf-8", "surrogatepass").decode("latin-1")]


def _check_error(exc: APIError) -> None:
    assert 400 <= exc.status < 500, exc.message
    assert "\n" not in exc.message and len(exc.message) < 600, exc.message
    assert set(exc.body()["error"]) == {"message", "type", "param", "code"}


def _parse_completion(body: dict[str, Any]) -> None:
    b = parse_json(json.dumps(body).encode())
    params = gen_params(b, LIMITS, chat=False)
    for p in completion_prompts(b, LIMITS, _encode):
        check_length(p, params, LIMITS, "prompt")


def _parse_chat(body: dict[str, Any]) -> None:
    b = parse_json(json.dumps(body).encode())
    params = gen_params(b, LIMITS, chat=True)
    chat_messages(b)
    if b.get("hogwild") is not None:
        hogwild_config(b["hogwild"])
    if b.get("threads") is not None:
        orchestrator_config(b["threads"], params, LIMITS.context)


@given(value=json_values, limit=st.integers(0, 6))
@settings(max_examples=300, deadline=None)
def test_depth_check_equals_the_depth_of_the_parsed_value(value, limit):
    raw = json.dumps(value).encode()
    assert too_deep(raw, limit) == (_depth(value) > limit)
    raw = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert too_deep(raw, limit) == (_depth(value) > limit)


@pytest.mark.parametrize("where", ["prompt", "extra"])
def test_deep_bodies_are_400_before_parsing(where):
    deep = "[" * 10_000 + "]" * 10_000
    raw = f'{{"model": "m", "{where}": {deep}}}'.encode()
    with pytest.raises(APIError, match="nests deeper than 64") as info:
        parse_json(raw)
    _check_error(info.value)
    flat = {"model": "m", "prompt": "[[[[{{{{" * 1000}  # brackets inside a string do not count
    assert parse_json(json.dumps(flat).encode()) == flat
    assert parse_json(json.dumps({"a": [[[1]]] * 100}).encode())["a"][0] == [[1]]


@pytest.mark.parametrize(
    "raw", [b'{"temperature": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b"\xff\xfe{", b"{"]
)
def test_not_strict_json_is_400(raw):
    with pytest.raises(APIError, match="not valid JSON") as info:
        parse_json(raw)
    _check_error(info.value)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("application/json", True), ("application/json; charset=utf-8", True),
     ("Application/JSON", True), ("application/vnd.api+json", True), ("text/plain", False),
     ("application/x-www-form-urlencoded", False), (None, False), ("", False)],
)  # fmt: skip
def test_content_type(value, ok):
    if ok:
        check_content_type(value)
        return
    with pytest.raises(APIError) as info:
        check_content_type(value)
    assert info.value.status == 415 and "Content-Type: application/json" in info.value.message


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [({"max_total_tokens": "x"}, "'threads.max_total_tokens' must be a 64-bit integer"),
     ({"max_threads": 2.5}, "'threads.max_threads' must be a 64-bit integer"),
     ({"max_calls": True}, "'threads.max_calls' must be a 64-bit integer"),
     ({"max_context_tokens": 5}, "unknown threads fields")],
)  # fmt: skip
def test_threads_fields_are_typed(spec, fragment):
    from plait.serve.protocol import GenParams

    with pytest.raises(APIError, match=fragment) as info:
        orchestrator_config(spec, GenParams(max_tokens=None), 512)
    assert info.value.param == "threads"


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [({"workers": "2"}, "'hogwild.workers' must be a 64-bit integer"),
     ({"seed": 2**64}, "'hogwild.seed' must be a 64-bit integer or null"),
     ({"budgets": [1, "a"]}, "'hogwild.budgets' must be a list"),
     ({"names": "AB"}, "'hogwild.names' must be a list"),
     ({"loop_threshold": 1e400}, "'hogwild.loop_threshold' must be a finite number"),
     ({"task": "poetry"}, "'hogwild.task' must be one of"),
     ("x", "must be an object")],
)  # fmt: skip
def test_hogwild_fields_are_typed(spec, fragment):
    with pytest.raises(APIError, match=fragment) as info:
        hogwild_config(spec)
    assert info.value.param == "hogwild"


@given(fields=st.dictionaries(st.sampled_from(COMPLETION_FIELDS), json_values, max_size=4))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_completion_bodies_are_parsed_or_a_clean_4xx(fields):
    body = {"model": "m", "prompt": "hello", "max_tokens": 4, **fields}
    try:
        _parse_completion(body)
    except APIError as exc:
        _check_error(exc)


messages = st.lists(
    st.dictionaries(st.sampled_from(["role", "content", "name"]), json_values, max_size=3)
    | st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "wizard", "tool"]),
                             "content": json_values}),
    max_size=3,
)  # fmt: skip
extension = st.dictionaries(st.sampled_from(HOGWILD_KEYS + THREADS_KEYS), json_values, max_size=3)


@given(
    fields=st.dictionaries(st.sampled_from(CHAT_FIELDS), json_values, max_size=4),
    msgs=messages | st.none(),
    ext=st.sampled_from(["hogwild", "threads"]),
    spec=extension | st.none(),
)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_chat_bodies_are_parsed_or_a_clean_4xx(fields, msgs, ext, spec):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    if msgs is not None:
        body["messages"] = msgs
    if spec is not None:
        body[ext] = spec
    try:
        _parse_chat(body)
    except APIError as exc:
        _check_error(exc)


def test_max_depth_covers_openai_bodies():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}
    assert _depth(body) < MAX_DEPTH and not too_deep(json.dumps(body).encode())
