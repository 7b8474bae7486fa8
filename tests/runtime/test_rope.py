"""RoPE algebra: shifts compose and invert, partial rotary, scaled shifts, query-rotation identity."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.config import RopeConfig
from plait.runtime.rope import Rope, apply_rotary, inverse_frequencies

CONFIGS = [
    RopeConfig(rotary_dim=16),
    RopeConfig(rotary_dim=8, theta=500000.0),  # partial rotary on head_dim 16
    RopeConfig(rotary_dim=16, kind="yarn", factor=4.0, original_max_position=128),
    RopeConfig(rotary_dim=16, kind="llama3", factor=8.0, original_max_position=64),
    RopeConfig(rotary_dim=16, kind="linear", factor=2.0),
]


def rope_at(r: Rope, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    cos, sin = r.cos_sin(pos, torch.float64)
    return apply_rotary(x, cos, sin)


def shift(r: Rope, x: torch.Tensor, delta: int) -> torch.Tensor:
    cos, sin = r.shift_cos_sin(torch.tensor([delta]), torch.float64)
    return apply_rotary(x, cos, sin)


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("delta", [-700, -3, 0, 5, 4096])
def test_shift_moves_rotated_key(cfg, delta):
    r = Rope(cfg, head_dim=16)
    k = torch.randn(9, 16, dtype=torch.float64)
    p = torch.arange(1000, 1009)
    assert torch.allclose(shift(r, rope_at(r, k, p), delta), rope_at(r, k, p + delta), atol=1e-9)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_shift_composition_and_inverse(cfg):
    r = Rope(cfg, head_dim=16)
    x = torch.randn(5, 16, dtype=torch.float64)
    assert torch.allclose(shift(r, shift(r, x, 37), 91), shift(r, x, 128), atol=1e-10)
    assert torch.allclose(shift(r, shift(r, x, 250), -250), x, atol=1e-10)


def test_partial_rotary_leaves_tail_untouched():
    r = Rope(RopeConfig(rotary_dim=8), head_dim=16)
    x = torch.randn(4, 16, dtype=torch.float64)
    y = rope_at(r, x, torch.arange(10, 14))
    assert torch.equal(y[:, 8:], x[:, 8:])
    assert not torch.allclose(y[:, :8], x[:, :8])


def test_scaled_shift_does_not_rescale():
    cfg = RopeConfig(rotary_dim=16, kind="yarn", factor=8.0, original_max_position=128)
    r = Rope(cfg, head_dim=16)
    assert r.attention_factor > 1.0
    x = torch.randn(3, 16, dtype=torch.float64)
    # a pure rotation preserves the norm; re-applying the YaRN factor would scale it
    assert torch.allclose(shift(r, x, 17).norm(dim=-1), x.norm(dim=-1))
    assert torch.allclose(
        rope_at(r, x, torch.arange(3)).norm(dim=-1), x.norm(dim=-1) * r.attention_factor
    )


@pytest.mark.parametrize("cfg", CONFIGS)
def test_query_rotation_identity(cfg):
    """<rope(q, iq), rope(k, ik)> == <rope(q, iq - s), rope(k, ik - s)>: rotate q, not k."""
    r = Rope(cfg, head_dim=16)
    q, k = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    for iq, ik, s in [(900, 300, 300), (50, 50, 7), (4000, 12, 12)]:
        a = rope_at(r, q, torch.tensor(iq)) @ rope_at(r, k, torch.tensor(ik))
        b = rope_at(r, q, torch.tensor(iq - s)) @ rope_at(r, k, torch.tensor(ik - s))
        assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize(
    "scaling",
    [
        {"rope_type": "default"},
        {"rope_type": "linear", "factor": 2.0},
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 256},
    ],
)
def test_frequencies_match_transformers(scaling):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from plait.runtime.config import ModelConfig

    hf = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=1024,
        rope_scaling=dict(scaling),
    )
    ours, factor = inverse_frequencies(ModelConfig.from_hf(hf).rope)
    kind = scaling["rope_type"]
    if kind == "default":
        dim = 16
        ref = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
        ref_factor = 1.0
    else:
        ref, ref_factor = ROPE_INIT_FUNCTIONS[kind](hf, "cpu")
    assert torch.allclose(ours.float(), ref.float(), rtol=1e-6)
    assert abs(factor - ref_factor) < 1e-9


def test_bad_rope_config_errors():
    with pytest.raises(ValueError, match="not supported"):
        RopeConfig(kind="dynamic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="original_max_position"):
        RopeConfig(kind="yarn", factor=4.0)
