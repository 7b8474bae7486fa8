"""Fixtures for Hogwild tests: the toy character tokenizer and the three model families.

The tokenizer and the tiny random models over its vocabulary live in `tests.helpers.toy`
(hidden 64, 4 heads, 2 KV heads, head_dim 16, 2 layers); nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers.toy import ToyTokenizer

torch.set_num_threads(1)  # tiny tensors: threads only add contention on the shared 2-core machine


@pytest.fixture(scope="session")
def toy_tokenizer() -> ToyTokenizer:
    return ToyTokenizer()


@pytest.fixture(scope="session", params=["llama", "qwen2", "qwen3"])
def family(request) -> str:
    return request.param
