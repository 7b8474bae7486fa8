"""Fixtures for plait.threads tests: a char-level format and a tiny trained byte-level BPE."""

from __future__ import annotations

import random

import pytest

from plait.threads.format import ThreadFormat

_WORDS = ["the", "sum", "of", "products", "is", "computed", "step", "by", "step", "we", "check", "each", "term", "and", "add", "them", "first", "second", "third", "value", "result", "answer", "so", "therefore", "let", "x", "y", "z", "be", "numbers", "12", "345", "6789", "plan", "compute", "verify", "thread", "outline", "parallel:", "hence", "=", "+", "*", "(", ")", ".", ",", "\n"]


@pytest.fixture(scope="session")
def char_fmt() -> ThreadFormat:
    return ThreadFormat.char_level()


def _train_bpe():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(_WORDS) for _ in range(40)) for _ in range(300)]
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


def random_words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS[:-1]) for _ in range(n))
