"""Model-shape presets and `fresh_runner`: real shapes match the bundled checkpoints, derived
shapes change only what they say, and the fresh set-up decodes like a hand-built one."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from plait.runtime import shapes
from plait.runtime.config import ModelConfig
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from tests.helpers.tiny import tiny_model

ATTENTION_FIELDS = (
    "family", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "qkv_bias",
    "o_bias", "qk_norm", "max_position", "rope", "rms_eps",
)  # fmt: skip


@pytest.mark.model
@pytest.mark.parametrize(
    ("name", "preset"),
    [("smollm2-135m", shapes.smollm2_135m), ("qwen2.5-0.5b", shapes.qwen25_05b)],
)
def test_bundled_shapes_match_the_checkpoints(name, preset):
    """The preset equals the config plait reads from the bundled checkpoint (ids aside)."""
    from plait.runtime.loading.bundled import BUNDLED, bundled_status
    from plait.runtime.loading.conversion import bundled_entry
    from plait.runtime.loading.loader import read_hf_config

    if not bundled_status(BUNDLED[name]).installed:
        pytest.skip(f"{name} is not installed (make install)")
    real = ModelConfig.from_hf(read_hf_config(bundled_entry(BUNDLED[name])))
    mine = preset()
    assert mine.rms_eps == pytest.approx(real.rms_eps, rel=1e-6)
    ids = dict(rms_eps=0.0, bos_token_id=None, eos_token_ids=())
    assert dataclasses.replace(mine, **ids) == dataclasses.replace(real, **ids)


@pytest.mark.parametrize("preset", [shapes.qwen25_05b, shapes.qwen25_7b, shapes.qwen25_32b])
def test_real_shapes_are_consistent_and_layers_override(preset):
    cfg = preset()
    assert cfg.hidden_size == cfg.num_heads * cfg.head_dim and cfg.rope.rotary_dim == cfg.head_dim
    short = preset(layers=3, max_position=65536)
    assert (short.num_layers, short.max_position) == (3, 65536)
    assert (
        dataclasses.replace(short, num_layers=cfg.num_layers, max_position=cfg.max_position) == cfg
    )


def test_attention_only_keeps_attention_and_shrinks_the_rest():
    cfg = shapes.qwen25_7b(layers=8)
    small = shapes.attention_only(cfg, vocab=300, intermediate=32)
    assert (small.vocab_size, small.intermediate_size) == (300, 32)
    assert all(getattr(small, f) == getattr(cfg, f) for f in ATTENTION_FIELDS)


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_tiny_follows_its_family(family):
    cfg = shapes.tiny(family, heads=6, kv_heads=3, head_dim=8)
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.group_size) == (48, 192, 2)
    assert cfg.qkv_bias == (family == "qwen2") and cfg.qk_norm == (family == "qwen3")
    assert shapes.tiny(family, qkv_bias=True).qkv_bias
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        shapes.tiny(family, heads=4, kv_heads=3)


def test_fresh_runner_decodes_like_a_hand_built_set_up():
    model = tiny_model("qwen2", seed=3)
    runner = shapes.fresh_runner(model, "reference", slots=64)
    store = runner.store
    assert (store.config, store.dtype, store.device, store.rope) == (
        model.config, model.dtype, model.device, model.rope,
    )  # fmt: skip
    hand = Runner(model, KVStore(model.config, model.dtype, rope=model.rope), "reference")
    outs = []
    for r in (runner, hand):
        seg = r.store.new_segment(8)
        r.prefill(seg, [5, 9, 2])
        outs.append(r.step([StreamInput([7], [seg], seg)]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    with pytest.raises(ValueError, match="attention"):
        shapes.fresh_runner(model, "no-such-backend")
