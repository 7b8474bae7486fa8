"""`CompletionBackend` over an OpenAI-compatible `/v1/completions` server (vLLM, SGLang, llama.cpp).

Two prompt modes:
- "ids" (vLLM, SGLang): the prompt is sent as token ids with `stop_token_ids`; vLLM's
  `return_tokens_as_token_ids` logprobs give the generated ids back exactly.
- "text" (llama-cpp-python's server and other text-only servers): the prompt is `fmt.decode(ids)`
  and stop tokens become stop strings; the completion text is encoded back with `fmt.encode`.
The threads of a block are sent as concurrent requests (the server batches them). Which stop ended
a "stop" finish is read from `stop_reason` (vLLM) or `matched_stop` (SGLang); for servers that
report neither (llama-cpp-python), a stop string present in the logprob tokens but cut from the
text, or tokens hidden from the text (usage count > logprob tokens), mean a stop fired; else EOS.
The stop token is appended to the ids. A server that cannot be reached, answers an HTTP error
(after `retries` for 5xx and connection errors), answers something other than JSON, or JSON
without `choices` raises `ServerError`: one line naming the URL and what to check.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from plait.errors import PlaitError
from plait.threads.format.codec import ThreadFormat
from plait.threads.inference.backend_api import Completion, CompletionRequest, FinishReason


class ServerError(PlaitError):
    """The server could not be reached or did not answer like an OpenAI-compatible API."""


def read_answer(url: str, resp: httpx.Response) -> dict[str, Any]:
    """The JSON body of an OpenAI-style answer with at least one choice, or a `ServerError`."""
    if resp.status_code >= 400:
        raise ServerError(
            f"{url} answered HTTP {resp.status_code}: {resp.text[:200]!r}; check the model name, "
            "--prompt-mode and that the server supports these fields"
        )
    try:
        data = resp.json()
    except (ValueError, RecursionError):  # not JSON, or nested too deeply to parse
        kind = resp.headers.get("content-type", "no content type")
        raise ServerError(
            f"{url} did not answer JSON (HTTP {resp.status_code}, {kind}: {resp.text[:60]!r}); "
            "the base URL must be the API root of an OpenAI-compatible server, e.g. "
            "http://127.0.0.1:8000/v1"
        ) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        keys = sorted(data)[:6] if isinstance(data, dict) else type(data).__name__
        raise ServerError(
            f"{url} answered JSON without 'choices' ({keys}); is this an OpenAI-compatible "
            "completions endpoint?"
        )
    return data


@dataclass(slots=True, kw_only=True)
class OpenAIConfig:
    base_url: str  # e.g. "http://127.0.0.1:8000/v1"
    model: str = "default"  # the served model name
    prompt_mode: Literal["ids", "text"] = "ids"
    api_key: str | None = None  # sent as a Bearer token if set
    timeout_s: float = 600.0
    retries: int = 2  # extra attempts on connection errors / 5xx
    extra_body: dict[str, Any] | None = None  # merged into every request body

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        if self.prompt_mode not in ("ids", "text"):
            raise ValueError(f"prompt_mode must be 'ids' or 'text', got {self.prompt_mode!r}")
        self.base_url = self.base_url.rstrip("/")


class OpenAIBackend:
    """Implements `CompletionBackend.complete` with one HTTP request per `CompletionRequest`."""

    def __init__(self, config: OpenAIConfig, fmt: ThreadFormat):
        self.config, self.fmt = config, fmt

    def body(self, req: CompletionRequest) -> dict[str, Any]:
        """The JSON body for one request (public for tests and debugging)."""
        cfg = self.config
        b: dict[str, Any] = {
            "model": cfg.model, "max_tokens": req.max_tokens, "temperature": req.temperature,
            "top_p": req.top_p, "logprobs": 1, "stream": False,
        }  # fmt: skip
        if req.top_k:
            b["top_k"] = req.top_k
        if req.seed is not None:
            b["seed"] = req.seed
        if cfg.prompt_mode == "ids":
            b.update(
                prompt=list(req.context), stop_token_ids=list(req.stop_token_ids),
                return_tokens_as_token_ids=True, skip_special_tokens=False,
                include_stop_str_in_output=True,
            )  # fmt: skip
        else:
            b["prompt"] = self.fmt.decode(list(req.context))
            if req.stop_token_ids:
                b["stop"] = [self.fmt.decode([t]) for t in req.stop_token_ids]
        if cfg.extra_body:
            b.update(cfg.extra_body)
        return b

    async def complete(self, requests: list[CompletionRequest]) -> list[Completion]:
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}
        async with httpx.AsyncClient(timeout=self.config.timeout_s, headers=headers) as client:
            return list(await asyncio.gather(*(self._one(client, r) for r in requests)))

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.config.base_url}/completions"
        for attempt in range(self.config.retries + 1):
            last = attempt == self.config.retries
            try:
                resp = await client.post(url, json=body)
            except httpx.TransportError as exc:
                if last:
                    raise ServerError(
                        f"cannot reach {url} ({type(exc).__name__}: {exc}); is the server "
                        "running, and is the base URL right?"
                    ) from exc
            else:
                if resp.status_code < 500 or last:
                    return read_answer(url, resp)
            await asyncio.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _one(self, client: httpx.AsyncClient, req: CompletionRequest) -> Completion:
        start = time.perf_counter()
        data = await self._post(client, self.body(req))
        choice = data["choices"][0]
        done = self.parse_choice(choice, req, data.get("usage") or {})
        done.latency_s = time.perf_counter() - start
        return done

    def parse_choice(
        self, choice: dict[str, Any], req: CompletionRequest, usage: dict[str, Any]
    ) -> Completion:
        """Turn one response choice into a `Completion` following the engine contract."""
        lp = choice.get("logprobs")
        lp = lp if isinstance(lp, dict) else {}
        lp_tokens = lp.get("tokens") or []
        text = choice.get("text")
        if text is not None and not isinstance(text, str):
            raise ServerError(f"{self.config.base_url} answered a choice whose 'text' is a "
                              f"{type(text).__name__}, not a string; is this an OpenAI-compatible "
                              "completions endpoint?")  # fmt: skip
        ids = _ids_from_logprobs(lp_tokens)
        if ids is None:
            ids = self.fmt.encode(text or "")
        else:
            size = getattr(self.fmt, "vocab_size", None)  # None: only negative ids refused
            bad = [t for t in ids if t < 0 or (size is not None and t >= size)]
            if bad:
                raise ServerError(f"{self.config.base_url} answered token id {bad[0]}, outside "
                                  f"the vocabulary of --tokenizer ({size} ids); pass the "
                                  "tokenizer of the served model")  # fmt: skip
        raw = lp.get("token_logprobs")
        raw_lp: list[float | None] | None = None
        if (
            isinstance(raw, list)
            and len(raw) == len(ids)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in raw)
        ):
            raw_lp = [float(x) for x in raw]  # one per id the server returned

        def done(toks: list[int], reason: FinishReason) -> Completion:
            # ids cut to max_tokens, or a stop / EOS id appended (not reported: None)
            aligned = None if raw_lp is None else (raw_lp + [None])[: len(toks)]
            if aligned is not None and len(aligned) != len(toks):
                aligned = None
            return Completion(tokens=toks, finish_reason=reason, logprobs=aligned)

        reason = choice.get("finish_reason") or "length"
        if reason == "length":
            return done(ids[: req.max_tokens], "length")
        stop_tok = self._which_stop(choice, req, usage, lp_tokens)
        if stop_tok is None:  # EOS
            eos = req.eos_token_ids[0] if req.eos_token_ids else None
            if eos is not None and (not ids or ids[-1] not in req.eos_token_ids):
                ids = ids + [eos]
            return done(ids, "eos")
        if not ids or ids[-1] != stop_tok:
            ids = ids + [stop_tok]
        return done(ids, "stop")

    def _which_stop(
        self,
        choice: dict[str, Any],
        req: CompletionRequest,
        usage: dict[str, Any],
        lp_tokens: list[Any],
    ) -> int | None:
        """The stop token id that ended a "stop" finish, or None for EOS."""
        for key in ("stop_reason", "matched_stop"):
            if key in choice:
                val = choice[key]
                if val is None:
                    return None
                if isinstance(val, int):
                    return val if val in req.stop_token_ids else None
                for t in req.stop_token_ids:
                    if self.fmt.decode([t]) == val:
                        return t
                return None
        if not req.stop_token_ids:
            return None
        # llama-cpp-python: the logprob tokens still hold the stop string the text was cut at
        text = choice.get("text") or ""
        joined = "".join(t for t in lp_tokens if isinstance(t, str))
        extra = joined[len(text) :] if joined.startswith(text) else ""
        for t in req.stop_token_ids:
            s = self.fmt.decode([t])
            if s and s in extra:
                return t
        hidden = usage.get("completion_tokens")
        if isinstance(hidden, int) and lp_tokens:
            return req.stop_token_ids[0] if hidden > len(lp_tokens) else None
        return req.stop_token_ids[0]  # the server cannot tell: assume the stop string fired


def _ids_from_logprobs(tokens: list[Any]) -> list[int] | None:
    """vLLM's `return_tokens_as_token_ids` renders each token as 'token_id:123'."""
    if not tokens or not all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return None
    tails = [t.split(":", 1)[1] for t in tokens]
    if not all(x.lstrip("-").isdigit() for x in tails):
        return None
    return [int(x) for x in tails]
