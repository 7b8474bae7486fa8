"""`DecoderLM.random`: reproducible fresh initialisation (matrices N(0, std), norms 1, biases 0)."""

from __future__ import annotations

import torch

from plait.runtime.config import ModelConfig
from plait.runtime.model import DecoderLM
from plait.runtime.shapes import tiny
from plait.threads.data.synthetic import small_model


def _cfg() -> ModelConfig:
    return tiny(
        "qwen3", vocab=300, hidden=64, intermediate=128, heads=4, kv_heads=2, head_dim=32,
        qkv_bias=True,
    )  # fmt: skip


def test_random_is_reproducible_and_initialised_by_role() -> None:
    a = DecoderLM.random(_cfg(), seed=3, std=0.05)
    b = DecoderLM.random(_cfg(), seed=3, std=0.05)
    c = DecoderLM.random(_cfg(), seed=4, std=0.05)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["embed.weight"], sc["embed.weight"])
    for name, p in a.named_parameters():
        if "norm" in name:
            assert torch.all(p == 1), name
        elif name.endswith("bias"):
            assert torch.all(p == 0), name
        elif p.numel() > 1000:
            assert abs(p.std().item() - 0.05) < 0.005, name
    assert not a.training


def test_random_dtype_and_small_model_shape() -> None:
    m = DecoderLM.random(_cfg(), dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    s = small_model(50, hidden=32, layers=3)
    assert (s.config.num_layers, s.config.head_dim, s.lm_head) == (3, 8, None)
