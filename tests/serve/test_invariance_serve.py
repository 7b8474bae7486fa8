"""Batch invariance through `plait serve` and the real `openai` client: 16 concurrent clients
get exactly the completions (text and log-probs) that one client gets asking one at a time,
greedy and seeded (the case the issue was filed from)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch

from plait.runtime import kernels
from tests.helpers.serve import MODEL

pytestmark = [pytest.mark.model, pytest.mark.server]
QUESTIONS = [
    "Write a haiku about the sea.",
    "What is 17 times 23?",
    "List three uses of a paperclip.",
    "Why is the sky blue? Explain it to a child in two sentences.",
]


@pytest.fixture(scope="module")
def client(served):
    why = kernels.why_not(torch.device("cpu"), torch.float32, 64)
    if why:
        pytest.skip(f"batch invariance needs plait's kernels: {why}")
    _, url = served
    return openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)


def _ask(client: openai.OpenAI, i: int) -> tuple[str, list[float]]:
    seeded = i % 2 == 1
    r = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
        max_tokens=16,
        temperature=0.8 if seeded else 0,
        seed=1234 + i if seeded else None,
        logprobs=True,
    )
    choice = r.choices[0]
    lps = [t.logprob for t in (choice.logprobs.content or [])] if choice.logprobs else []
    return choice.message.content or "", lps


def test_sixteen_concurrent_clients_equal_one(client):
    one = [_ask(client, i) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        many = list(pool.map(lambda i: _ask(client, i), range(16)))
    assert all(lps for _, lps in one)
    assert many == one
