"""Shared helpers of the ThreadWeaver tests: random text, random block structures, a vLLM-shaped
completions handler for the local stub server (`stub_server` fixture in tests/threads/conftest.py).
"""

from __future__ import annotations

import random

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
