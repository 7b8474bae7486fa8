"""Tag embeddings initialised as the mean of the embeddings of the tag name's tokens."""

from __future__ import annotations

import pytest
import torch

from plait.threads.format.tags import add_thread_tokens, tag_name
from plait.threads.training.tag_embeddings import init_tag_embeddings


def _expected(tok, weight, tag):
    src = tok.encode(tag_name(tag), add_special_tokens=False)
    return weight[src].mean(dim=0)


def test_init_on_tensor_grows_and_means(bpe_tokenizer):
    base = len(bpe_tokenizer)
    ids = add_thread_tokens(bpe_tokenizer)
    w = torch.randn(base, 16)  # (V_old, D)
    new = init_tag_embeddings(bpe_tokenizer, w)
    assert new.shape == (base + 8, 16) and torch.equal(new[:base], w)
    for tag, i in ids.items():
        assert torch.allclose(new[i], _expected(bpe_tokenizer, w, tag), atol=1e-6)
    # a tensor already large enough is edited in place
    big = torch.randn(base + 8, 16)
    same = init_tag_embeddings(bpe_tokenizer, big)
    assert same is big


@pytest.mark.parametrize("tied", [False, True])
def test_init_on_transformers_model(bpe_tokenizer, tied):
    from tests.helpers.tiny import tiny_hf

    base = len(bpe_tokenizer)
    model = tiny_hf(
        "llama", 0, heads=2, kv_heads=2, layers=1, vocab=base, intermediate=64, tie=tied
    )
    emb0 = model.get_input_embeddings().weight.detach().clone()
    head0 = model.get_output_embeddings().weight.detach().clone()
    ids = add_thread_tokens(bpe_tokenizer)
    init_tag_embeddings(bpe_tokenizer, model)
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert emb.shape[0] % 64 == 0 and emb.shape[0] >= base + 8  # padded vocabulary
    for tag, i in ids.items():
        assert torch.allclose(emb[i], _expected(bpe_tokenizer, emb0, tag), atol=1e-6)
        want_head = _expected(bpe_tokenizer, emb0 if tied else head0, tag)
        assert torch.allclose(head[i], want_head, atol=1e-6)


def test_init_requires_tags(bpe_tokenizer):
    with pytest.raises(ValueError, match="add_thread_tokens"):
        init_tag_embeddings(bpe_tokenizer, torch.zeros(4, 2))
