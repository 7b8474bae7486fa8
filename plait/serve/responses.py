"""Engine outputs in, OpenAI response objects and SSE chunks out.

`Choices` accumulates a request's `SampleOutput`s per choice (text, ids, log-probs, finish) for a
whole response; `completion_chunk` / `chat_chunk` render one output as a streaming chunk. Choice
`index` = prompt index x n + sample index (a /v1/completions body may hold several prompts).
`usage` counts each prompt once (its n samples share it) and every generated token.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from plait.runtime.engine import SampleOutput, TokenLogprob


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def sse(obj: Any) -> str:
    """One server-sent event carrying a JSON object (or the literal [DONE])."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return f"data: {data}\n\n"


class TokenText:
    """How tokens appear in log-probs: their text, or 'token_id:N' (vLLM's option)."""

    def __init__(self, tokenizer: Any, as_ids: bool) -> None:
        self.tokenizer, self.as_ids = tokenizer, as_ids

    def __call__(self, token: int) -> str:
        if self.as_ids:
            return f"token_id:{token}"
        return str(self.tokenizer.decode([token], skip_special_tokens=False))


@dataclass(slots=True)
class Choice:
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }  # fmt: skip


class Choices:
    """All choices of one response (see the module docstring)."""

    def __init__(self, count: int) -> None:
        self.choices = [Choice() for _ in range(count)]
        self.usage = Usage()
        self._prompts: set[int] = set()

    def add(self, prompt_index: int, n: int, out: SampleOutput) -> int:
        """Record one output; returns its choice index."""
        index = prompt_index * n + out.index
        c = self.choices[index]
        c.text += out.text
        c.token_ids.extend(out.token_ids)
        c.logprobs.extend(out.logprobs)
        self.usage.completion_tokens += len(out.token_ids)
        if prompt_index not in self._prompts:
            self._prompts.add(prompt_index)
            self.usage.prompt_tokens += out.prompt_tokens
            self.usage.cached_tokens += out.cached_tokens
        if out.finish_reason is not None:
            c.finish_reason = "length" if out.finish_reason == "length" else "stop"
            c.stop_reason = out.stop_reason
        return index


def completion_logprobs(lps: list[TokenLogprob], text: TokenText, offset: int) -> dict[str, Any]:
    """The /v1/completions `logprobs` object for some tokens."""
    tokens = [text(lp.token) for lp in lps]
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": tokens, "token_logprobs": [lp.logprob for lp in lps],
        "top_logprobs": [{text(t): v for t, v in lp.top} for lp in lps], "text_offset": offsets,
    }  # fmt: skip


def chat_logprobs(lps: list[TokenLogprob], text: TokenText) -> dict[str, Any]:
    """The /v1/chat/completions `logprobs` object for some tokens."""

    def entry(token: int, logprob: float) -> dict[str, Any]:
        s = text(token)
        return {"token": s, "logprob": logprob, "bytes": list(s.encode())}

    return {
        "content": [
            {**entry(lp.token, lp.logprob), "top_logprobs": [entry(t, v) for t, v in lp.top]}
            for lp in lps
        ]
    }


def completion_body(
    rid: str, model: str, choices: Choices, text: TokenText | None
) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [
            {
                "index": i, "text": c.text, "finish_reason": c.finish_reason,
                "stop_reason": c.stop_reason,
                "logprobs": completion_logprobs(c.logprobs, text, 0) if text else None,
            }
            for i, c in enumerate(choices.choices)
        ],
        "usage": choices.usage.body(),
    }  # fmt: skip


def chat_body(rid: str, model: str, choices: Choices, text: TokenText | None) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [
            {
                "index": i, "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason, "stop_reason": c.stop_reason,
                "logprobs": chat_logprobs(c.logprobs, text) if text else None,
            }
            for i, c in enumerate(choices.choices)
        ],
        "usage": choices.usage.body(),
    }  # fmt: skip


def completion_chunk(
    rid: str, model: str, index: int, out: SampleOutput, text: TokenText | None, offset: int
) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": index, "text": out.text, "finish_reason": _finish(out),
        "logprobs": completion_logprobs(out.logprobs, text, offset) if text else None,
    }  # fmt: skip
    if out.finish_reason is not None:
        choice["stop_reason"] = out.stop_reason
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [choice]}  # fmt: skip


def chat_chunk(
    rid: str, model: str, index: int, delta: dict[str, Any], finish: str | None = None,
    logprobs: dict[str, Any] | None = None, **extra: Any,
) -> dict[str, Any]:  # fmt: skip
    choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
    return {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": [choice], **extra}  # fmt: skip


def usage_chunk(rid: str, model: str, obj: str, usage: Usage) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": int(time.time()), "model": model,
            "choices": [], "usage": usage.body()}  # fmt: skip


def _finish(out: SampleOutput) -> str | None:
    if out.finish_reason is None:
        return None
    return "length" if out.finish_reason == "length" else "stop"
