"""Shared helpers of the ThreadWeaver tests: random text, random block structures, a local
OpenAI-compatible stub server (`StubServer`, `Raw` answers; the `stub_server` fixture in
tests/threads/conftest.py starts them) and a vLLM-shaped completions handler for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from plait.threads.format.render import BlockSpec

WORDS = [
    "the",
    "sum",
    "of",
    "products",
    "is",
    "computed",
    "step",
    "by",
    "step",
    "we",
    "check",
    "each",
    "term",
    "and",
    "add",
    "them",
    "first",
    "second",
    "third",
    "value",
    "result",
    "answer",
    "so",
    "therefore",
    "let",
    "x",
    "y",
    "z",
    "be",
    "numbers",
    "12",
    "345",
    "6789",
    "plan",
    "compute",
    "verify",
    "thread",
    "outline",
    "parallel:",
    "hence",
    "=",
    "+",
    "*",
    "(",
    ")",
    ".",
    ",",
    "\n",
]


def random_words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS[:-1]) for _ in range(n))


def random_parts(rng: random.Random, blocks: int) -> list:
    parts: list = [random_words(rng, rng.randint(1, 8)) + "\n"]
    for _ in range(blocks):
        k = rng.randint(1, 4)
        outlines = [random_words(rng, rng.randint(1, 5)) for _ in range(k)]
        threads = [random_words(rng, rng.randint(1, 12)) for _ in range(k)]
        parts += [BlockSpec(outlines=outlines, threads=threads), "\n" + random_words(rng, 4) + "\n"]
    return parts


def vllm_like(fmt, script):
    """Answers like vLLM with return_tokens_as_token_ids: ids in logprobs, stop_reason set."""

    def handler(path, body):
        assert path == "/v1/completions"
        ctx = body["prompt"]
        assert isinstance(ctx, list) and body["return_tokens_as_token_ids"]
        toks = script(ctx, body)[: body["max_tokens"]]
        reason, stop_reason = "length", None
        for k, t in enumerate(toks):
            if t in body["stop_token_ids"]:
                toks, reason, stop_reason = toks[: k + 1], "stop", t
                break
            if t in fmt.eos_ids:
                toks, reason = toks[:k], "stop"  # vLLM hides EOS; stop_reason None
                break
        return {
            "choices": [{
                "text": fmt.decode(toks), "finish_reason": reason, "stop_reason": stop_reason,
                "logprobs": {"tokens": [f"token_id:{t}" for t in toks], "token_logprobs": [-0.5] * len(toks)},
            }],
            "usage": {"completion_tokens": len(toks)},
        }  # fmt: skip

    return handler


@dataclass(frozen=True)
class Raw:
    """A verbatim HTTP answer of the stub server."""

    status: int
    content_type: str
    body: bytes


class StubServer:
    """A scripted OpenAI-compatible HTTP server on 127.0.0.1 (a free port) for tests.

    `handler(path, body) -> dict` answers each POST as JSON; a handler may instead return a
    `Raw(status, content_type, body)` to answer anything (an HTML page, an HTTP 500). Every
    (path, body) is recorded.
    """

    def __init__(self, handler):
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls: list[tuple[str, dict]] = []
        stub = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.calls.append((self.path, body))
                kind = "application/json"
                try:
                    answer = handler(self.path, body)
                    if isinstance(answer, Raw):
                        code, kind, out = answer.status, answer.content_type, answer.body
                    else:
                        out, code = json.dumps(answer).encode(), 200
                except Exception as exc:  # surface handler bugs as HTTP 400s
                    out, code = json.dumps({"error": repr(exc)}).encode(), 400
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
