"""Ready-made set-ups: named model shapes (`ModelConfig`s of known checkpoints) and a runner over a fresh store.

Real shapes (`smollm2_135m`, `qwen25_05b`, `qwen25_7b`, `qwen25_32b`) carry the published
architecture of those checkpoints, so random-weight models for benchmarks and tests decode at
the real cost without downloading weights; `layers=` keeps fewer layers of the same shape.
`attention_only` keeps a shape's attention and shrinks what attention benchmarks never run (the
MLP width, the vocabulary). `tiny` is the small model of tests and synthetic training runs.
`fresh_runner` is the usual decode set-up: one `KVStore` matching a model and a `Runner` on it.

Nothing here imports torch at module level; `fresh_runner` imports the runtime when called.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from plait.runtime.config import Family, ModelConfig, RopeConfig

if TYPE_CHECKING:
    from plait.runtime.model import DecoderLM
    from plait.runtime.runner import Runner


def _with_layers(cfg: ModelConfig, layers: int | None) -> ModelConfig:
    return cfg if layers is None else dataclasses.replace(cfg, num_layers=layers)


def smollm2_135m(*, layers: int | None = None, max_position: int = 8192) -> ModelConfig:
    """SmolLM2-135M (Llama): 30 layers, 9 heads over 3 KV heads of 64, tied embeddings."""
    cfg = ModelConfig(
        family="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536,
        num_layers=30, num_heads=9, num_kv_heads=3, head_dim=64, rms_eps=1e-5,
        tie_embeddings=True, max_position=max_position,
        rope=RopeConfig(theta=100000.0, rotary_dim=64),
    )  # fmt: skip
    return _with_layers(cfg, layers)


def _qwen25(
    layers: int | None, max_position: int, shape: tuple[int, int, int, int, int, int, int]
) -> ModelConfig:
    """A Qwen2.5 shape (vocab, hidden, intermediate, layers, heads, KV heads, head dim): q/k/v
    biases, RoPE base 1e6 over the whole head, an untied head."""
    vocab, hidden, intermediate, n_layers, heads, kv_heads, head_dim = shape
    cfg = ModelConfig(
        family="qwen2", vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
        num_layers=n_layers, num_heads=heads, num_kv_heads=kv_heads, head_dim=head_dim,
        qkv_bias=True, max_position=max_position, rope=RopeConfig(theta=1e6, rotary_dim=head_dim),
    )  # fmt: skip
    return _with_layers(cfg, layers)


def qwen25_05b(*, layers: int | None = None, max_position: int = 32768) -> ModelConfig:
    """Qwen2.5-0.5B as plait bundles it (Qwen2.5-Coder-0.5B-Instruct GGUF): 24 layers, 14 heads
    over 2 KV heads of 64, an untied output head (the GGUF keeps its own output.weight)."""
    return _qwen25(layers, max_position, (151936, 896, 4864, 24, 14, 2, 64))


def qwen25_7b(*, layers: int | None = None, max_position: int = 32768) -> ModelConfig:
    """Qwen2.5-7B: 28 layers, 28 heads over 4 KV heads of 128, untied head."""
    return _qwen25(layers, max_position, (152064, 3584, 18944, 28, 28, 4, 128))


def qwen25_32b(*, layers: int | None = None, max_position: int = 32768) -> ModelConfig:
    """Qwen2.5-32B: 64 layers, 40 heads over 8 KV heads of 128, untied head."""
    return _qwen25(layers, max_position, (152064, 5120, 27648, 64, 40, 8, 128))


def attention_only(cfg: ModelConfig, *, vocab: int = 256, intermediate: int = 64) -> ModelConfig:
    """`cfg` with its attention unchanged (layers, heads, head dim, RoPE, biases, context) and a
    tiny MLP and vocabulary: the model of benchmarks that time attention alone."""
    return dataclasses.replace(cfg, vocab_size=vocab, intermediate_size=intermediate)


def tiny(
    family: Family = "qwen2",
    *,
    vocab: int = 256,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    head_dim: int = 16,
    hidden: int | None = None,
    intermediate: int | None = None,
    max_position: int = 4096,
    tie: bool = False,
    qkv_bias: bool | None = None,
    theta: float = 10000.0,
) -> ModelConfig:
    """A small model of `family` for tests and synthetic runs.

    `hidden` defaults to heads * head_dim and `intermediate` to 4 * hidden; `qkv_bias` to the
    family's own (Qwen2 has q/k/v biases); Qwen3 always has its q/k norms. Every head dim rotates.
    """
    hidden = heads * head_dim if hidden is None else hidden
    return ModelConfig(
        family=family,
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden if intermediate is None else intermediate,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        qkv_bias=family == "qwen2" if qkv_bias is None else qkv_bias,
        qk_norm=family == "qwen3",
        tie_embeddings=tie,
        max_position=max_position,
        rope=RopeConfig(theta=theta, rotary_dim=head_dim),
    )


def fresh_runner(model: DecoderLM, attention: str = "fast", *, slots: int = 1024) -> Runner:
    """A `Runner` over a new, empty `KVStore` that matches `model` (its config, dtype, device
    and RoPE tables); the store is `runner.store`. `attention` names a backend (see
    `plait.runtime.attention.registry`); a bad name raises ValueError."""
    from plait.runtime.runner import Runner
    from plait.runtime.segments import KVStore

    store = KVStore(model.config, model.dtype, model.device, rope=model.rope, slots=slots)
    return Runner(model, store, attention=attention)
