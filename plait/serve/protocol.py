"""OpenAI request bodies in, validated engine parameters out; errors in the OpenAI shape.

Every check names the field and the fix, and raises `APIError` (HTTP status + OpenAI error type),
which the app turns into `{"error": {"message", "type", "param", "code"}}`. Accepted beyond the
OpenAI fields (as vLLM does): `top_k`, `stop_token_ids`, `ignore_eos`,
`include_stop_str_in_output`, `return_tokens_as_token_ids`, `skip_special_tokens`, and the
plait extensions `hogwild` and `threads` (chat).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from plait.runtime.sampling import SamplingParams


class APIError(Exception):
    """An error answered to the client (status, OpenAI error type, offending field)."""

    def __init__(
        self, status: int, message: str, type_: str = "invalid_request_error",
        param: str | None = None, code: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status, message, type_, param, code,
        )  # fmt: skip

    def body(self) -> dict[str, Any]:
        return {
            "error": {"message": self.message, "type": self.type, "param": self.param,
                      "code": self.code}
        }  # fmt: skip


def bad(param: str, message: str, code: str | None = None) -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass(slots=True, kw_only=True)
class Limits:
    """Server limits that shape validation."""

    context: int  # the model's context (prompt + completion)
    vocab: int
    max_n: int = 16
    max_logprobs: int = 20
    max_stops: int = 8
    max_stop_chars: int = 512  # per stop string (a long one is held back from every delta)
    max_stop_ids: int = 256


@dataclass(slots=True, kw_only=True)
class GenParams:
    """Validated generation parameters shared by both endpoints."""

    max_tokens: int | None  # None: up to the context
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    logprobs: int | None = None
    stream: bool = False
    include_usage: bool = False
    ignore_eos: bool = False
    include_stop_str: bool = False
    token_ids_as_text: bool = False  # vLLM's return_tokens_as_token_ids
    max_tokens_key: str = "max_tokens"  # the field the client sent (chat: max_completion_tokens)


def _typed(body: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    value = body.get(key)
    if value is None:
        return None
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        raise bad(key, f"'{key}' must be {what}, got {type(value).__name__} {value!r:.40}")
    return value


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = _typed(body, key, (int, float), "a number")
    value = default if value is None else float(value)
    if not lo <= value <= hi:
        raise bad(key, f"'{key}' must be between {lo} and {hi}, got {value}")
    return value


def gen_params(body: dict[str, Any], limits: Limits, chat: bool) -> GenParams:
    """Validate the sampling, budget, stop and streaming fields of a request body."""
    for key, off in (("presence_penalty", 0), ("frequency_penalty", 0)):
        if _number(body, key, off, -2.0, 2.0) != off:
            raise bad(key, f"'{key}' is not supported by plait serve; leave it at 0")
    n = _typed(body, "n", (int,), "an integer")
    n = 1 if n is None else n
    if not 1 <= n <= limits.max_n:
        raise bad("n", f"'n' must be between 1 and {limits.max_n}, got {n}; lower n")
    best_of = _typed(body, "best_of", (int,), "an integer")
    if best_of is not None and best_of != n:
        raise bad("best_of", "'best_of' is not supported; leave it out (or equal to n)")
    key = (
        "max_completion_tokens"
        if chat and body.get("max_completion_tokens") is not None
        else "max_tokens"
    )
    max_tokens = _typed(body, key, (int,), "an integer")
    if max_tokens is not None and not 1 <= max_tokens <= limits.context:
        raise bad(
            key, f"'{key}' must be between 1 and the model's context of {limits.context} "
            f"tokens, got {max_tokens}; lower {key}"
        )  # fmt: skip
    top_k = _typed(body, "top_k", (int,), "an integer") or 0
    if top_k < -1:
        raise bad("top_k", f"'top_k' must be >= -1 (-1 or 0 = off), got {top_k}")
    seed = _typed(body, "seed", (int,), "an integer")
    if seed is not None and not -(2**63) <= seed < 2**63:
        raise bad("seed", f"'seed' must be a signed 64-bit integer (-2**63 to 2**63 - 1), got "
                  f"{seed:.3g}; pass a smaller seed")  # fmt: skip
    temperature = _number(body, "temperature", 1.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0)
    if top_p == 0:
        raise bad("top_p", "'top_p' must be > 0 (1 = off); use temperature 0 for greedy")
    sampling = SamplingParams(temperature=temperature, top_k=max(top_k, 0), top_p=top_p, seed=seed)
    return GenParams(
        max_tokens=max_tokens, n=n, sampling=sampling, stop=_stops(body, limits),
        stop_token_ids=_token_list(body, "stop_token_ids", limits),
        logprobs=_logprobs(body, limits, chat), stream=bool(_typed(body, "stream", (bool,), "a boolean")),
        include_usage=_include_usage(body), ignore_eos=bool(_typed(body, "ignore_eos", (bool,), "a boolean")),
        include_stop_str=bool(_typed(body, "include_stop_str_in_output", (bool,), "a boolean")),
        token_ids_as_text=bool(_typed(body, "return_tokens_as_token_ids", (bool,), "a boolean")),
        max_tokens_key=key,
    )  # fmt: skip


def _stops(body: dict[str, Any], limits: Limits) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise bad("stop", "'stop' must be a string or a list of strings")
    if len(stops) > limits.max_stops:
        raise bad("stop", f"at most {limits.max_stops} stop strings, got {len(stops)}")
    longest = max((len(s) for s in stops), default=0)
    if longest > limits.max_stop_chars:
        raise bad("stop", f"a stop string has {longest} characters; the limit is "
                  f"{limits.max_stop_chars}; send shorter stop strings")  # fmt: skip
    return tuple(s for s in stops if s)


def _token_list(body: dict[str, Any], key: str, limits: Limits) -> tuple[int, ...]:
    """Stop token ids: any non-negative ints (an id the model cannot emit never matches; a
    client's tokenizer may have added tokens beyond the model's vocabulary)."""
    ids = body.get(key)
    if ids is None:
        return ()
    ok = isinstance(ids, list) and all(_is_id(t, Limits(context=0, vocab=2**62)) for t in ids)
    if not ok:
        raise bad(key, f"'{key}' must be a list of non-negative token ids")
    if len(ids) > limits.max_stop_ids:
        raise bad(key, f"at most {limits.max_stop_ids} '{key}', got {len(ids)}")
    return tuple(ids)


def _is_id(t: Any, limits: Limits) -> bool:
    return isinstance(t, int) and not isinstance(t, bool) and 0 <= t < limits.vocab


def _logprobs(body: dict[str, Any], limits: Limits, chat: bool) -> int | None:
    if chat:
        on = _typed(body, "logprobs", (bool,), "a boolean")
        top = _typed(body, "top_logprobs", (int,), "an integer")
        if top is not None and not on:
            raise bad("top_logprobs", "'top_logprobs' needs 'logprobs': true")
        value = (top or 0) if on else None
        key = "top_logprobs"
    else:
        value = _typed(body, "logprobs", (int,), "an integer")
        key = "logprobs"
    if value is not None and not 0 <= value <= limits.max_logprobs:
        raise bad(key, f"'{key}' must be between 0 and {limits.max_logprobs}, got {value}")
    return value


def _include_usage(body: dict[str, Any]) -> bool:
    opts = _typed(body, "stream_options", (dict,), "an object") or {}
    return bool(opts.get("include_usage"))


def completion_prompts(body: dict[str, Any], limits: Limits, encode: Any) -> list[list[int]]:
    """The prompts of a /v1/completions body as token ids (text, ids, or a list of either)."""
    prompt = body.get("prompt")
    if prompt is None:
        raise bad("prompt", "'prompt' is required: a string, a list of strings or token ids")
    if isinstance(prompt, str) or (
        isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt)
    ):
        prompt = [prompt]
    if not isinstance(prompt, list) or not prompt:
        raise bad("prompt", "'prompt' must be a non-empty string, list of strings or token ids")
    out = []
    for p in prompt:
        if isinstance(p, str):
            ids = list(encode(p))
        elif isinstance(p, list) and all(_is_id(t, limits) for t in p):
            ids = list(p)
        else:
            raise bad("prompt", f"each prompt must be text or token ids in [0, {limits.vocab})")
        if not ids:
            raise bad("prompt", "the prompt is empty; send some text or token ids")
        out.append(ids)
    return out


ROLES = ("system", "developer", "user", "assistant", "tool", "function")  # the chat spec's


def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
    """The messages of a /v1/chat/completions body, content parts joined as text."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages", "'messages' must be a non-empty list of {role, content} objects")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad("messages", f"messages[{i}] must be an object with a 'role' string")
        if m["role"] not in ROLES:
            raise bad("messages", f"messages[{i}].role is {m['role']!r:.40}; use one of "
                      f"{', '.join(ROLES)}")  # fmt: skip
        content = m.get("content")
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            if len(parts) != len(content) or not all(isinstance(t, str) for t in parts):
                raise bad("messages", f"messages[{i}].content parts must be text parts")
            content = "".join(parts)  # type: ignore[arg-type]
        if not isinstance(content, str):
            raise bad("messages", f"messages[{i}].content must be a string or text parts")
        out.append({"role": m["role"], "content": content})
    return out


def check_length(
    prompt: list[int], params: GenParams, limits: Limits, param: str = "messages"
) -> int:
    """The completion budget of one prompt; 400 when prompt + max_tokens exceed the context.
    `param`: the field that holds the prompt ("prompt" or "messages")."""
    room = limits.context - len(prompt)
    if room < 1:
        raise APIError(
            400, f"the prompt has {len(prompt)} tokens but the model's context is "
            f"{limits.context}; shorten the prompt", param=param, code="context_length_exceeded",
        )  # fmt: skip
    if params.max_tokens is not None and params.max_tokens > room:
        raise APIError(
            400, f"the prompt ({len(prompt)} tokens) plus max_tokens ({params.max_tokens}) "
            f"exceed the model's context of {limits.context}; lower {params.max_tokens_key} to at "
            f"most {room}", param=params.max_tokens_key, code="context_length_exceeded",
        )  # fmt: skip
    return params.max_tokens if params.max_tokens is not None else room
