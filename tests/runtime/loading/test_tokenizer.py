"""Chat prompts and end-of-sequence ids on a tiny tokenizer."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from plait.runtime.loading.tokenizer import as_messages, chat_prompt_ids, eos_token_ids
from tests.helpers.checkpoints import tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_text_becomes_one_user_message():
    assert as_messages("hi") == [{"role": "user", "content": "hi"}]
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    assert as_messages(msgs) == msgs and as_messages(msgs) is not msgs


@pytest.mark.parametrize(
    "bad,match",
    [
        ("", "empty prompt"),
        ("  \n", "empty prompt"),
        ([], "empty prompt"),
        ([{"content": "x"}], "'role' and 'content'"),
    ],
)
def test_bad_prompts(bad, match):
    with pytest.raises(ValueError, match=match):
        as_messages(bad)


def test_chat_prompt_follows_the_template(tok):
    ids = chat_prompt_ids(tok, "hello")
    text = tok.decode(ids)
    assert text == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"
    no_gen = chat_prompt_ids(tok, "hello", add_generation_prompt=False)
    assert ids[: len(no_gen)] == no_gen and len(ids) > len(no_gen)
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(im_start) == 2  # specials are single tokens, no BOS added twice


def test_without_a_template_the_text_is_encoded(tok):
    tok2 = tiny_tokenizer()
    tok2.chat_template = None
    ids = chat_prompt_ids(
        tok2, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    )
    assert tok2.decode(ids) == "a\nb"


def test_eos_ids_union(tok, tmp_path):
    vocab = tok.get_vocab()
    cfg = SimpleNamespace(eos_token_id=[5, 6])
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 7}))
    ids = eos_token_ids(tok, cfg, tmp_path)
    assert set(ids) == {5, 6, 7, vocab["<|im_end|>"], vocab["<|endoftext|>"]}
    assert list(ids) == sorted(ids)
    (tmp_path / "generation_config.json").write_text("{broken")
    assert 7 not in eos_token_ids(tok, cfg, tmp_path)
