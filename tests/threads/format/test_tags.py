"""Tags as single special tokens."""

from __future__ import annotations

import pytest

from plait.threads.format.tags import TAGS, add_thread_tokens, tag_name


def test_single_tokens_and_idempotent(bpe_tokenizer):
    n0 = len(bpe_tokenizer)
    ids = add_thread_tokens(bpe_tokenizer)
    assert list(ids) == list(TAGS) and len(set(ids.values())) == 8
    assert len(bpe_tokenizer) == n0 + 8
    for tag, i in ids.items():
        assert bpe_tokenizer.encode(f"x{tag}y", add_special_tokens=False).count(i) == 1
        assert bpe_tokenizer.decode([i]) == tag
    assert add_thread_tokens(bpe_tokenizer) == ids and len(bpe_tokenizer) == n0 + 8
    legacy = add_thread_tokens(bpe_tokenizer, legacy=True)
    assert "<Conclusion>" in legacy and len(bpe_tokenizer) == n0 + 12


def test_tag_name():
    assert tag_name("<Parallel>") == "Parallel" and tag_name("</Thread>") == "/Thread"
    with pytest.raises(ValueError, match="<Name>"):
        tag_name("Parallel")
