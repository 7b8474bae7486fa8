"""plait's own decoder-only forward pass for the Llama, Qwen2 and Qwen3 families.

The model owns the math (norms, projections, SwiGLU, head); attention and caching belong to an
attention context passed to `forward`, so the same weights serve plain causal decoding, shared
KV segments (Hogwild, ThreadWeaver) and packed-trie training. Tokens are one flat ragged vector
`(T,)`; the context knows which rows belong to which stream and where each sits.

Weights use fused projections (`qkv`, `gate_up`) for fewer kernel launches; `load_hf_state_dict`
takes transformers parameter names.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plait.runtime import kernels
from plait.runtime.attention.context import AttentionContext
from plait.runtime.config import ModelConfig
from plait.runtime.kernels import pointwise
from plait.runtime.quant.weight import PackedWeight
from plait.runtime.rope import Rope

# NOTE: on CPU, fp32 `F.linear` with 2..4 rows takes a GEMM path that re-packs the weight and
# costs several times a single-row product (measured on the 2-core dev box: 9728x896 weight,
# 2 rows 27 ms vs 1 row 3-7 ms); `(W @ x.T).T` streams the weight once. Used only where the
# compiled kernel (plait.runtime.kernels) cannot run. Set to 0 to disable.
SMALL_ROWS_TRANSPOSED = 4


def linear(
    x: torch.Tensor, weight: torch.Tensor | PackedWeight, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`F.linear`, through plait's compiled CPU kernel where it runs (bf16/fp32, no autograd):
    every row count (batch invariance, the default: a row's bits never depend on the rows
    beside it; `kernels.batch_invariant`) or, with invariance off, decode steps up to
    `kernels.SKINNY_MAX_ROWS` rows. Elsewhere torch (the small-row fp32 fallback below), whose
    bits may depend on the row count.

    The one routing point of the model's matrix products. A PackedWeight (GGUF blocks kept
    quantized, plait.runtime.quant) computes on its blocks and keeps the rule: one summation
    order per output whatever the row count."""
    if isinstance(weight, PackedWeight):
        return weight.matmul(x, bias)
    if kernels.use_skinny(x, weight):
        return kernels.skinny_linear(x, weight, bias)
    if (
        1 < x.shape[0] <= SMALL_ROWS_TRANSPOSED
        and x.dim() == 2
        and x.device.type == "cpu"
        and x.dtype == torch.float32
    ):
        y = (weight @ x.T).T
        return y if bias is None else y + bias
    return F.linear(x, weight, bias)


def swiglu(gu: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of gu (T, 2 I) = [gate | up] -> (T, I); fused where the kernels run."""
    if gu.dim() == 2 and pointwise.use_pointwise(gu):
        return pointwise.silu_mul(gu)
    gate, up = gu.chunk(2, dim=-1)
    return F.silu(gate) * up


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        if dtype == self.weight.dtype and pointwise.use_pointwise(x):
            return pointwise.rms_norm(x, self.weight, self.eps)  # the same math, one call
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hq, hkv, d, h = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.hidden_size
        self.q_size, self.kv_size = hq * d, hkv * d
        self.input_norm = RMSNorm(h, cfg.rms_eps)
        self.post_norm = RMSNorm(h, cfg.rms_eps)
        self.qkv = nn.Linear(h, self.q_size + 2 * self.kv_size, bias=cfg.qkv_bias)
        self.o = nn.Linear(hq * d, h, bias=cfg.o_bias)
        self.gate_up = nn.Linear(h, 2 * cfg.intermediate_size, bias=cfg.mlp_bias)
        self.down = nn.Linear(cfg.intermediate_size, h, bias=cfg.mlp_bias)
        self.q_norm = RMSNorm(d, cfg.rms_eps) if cfg.qk_norm else None
        self.k_norm = RMSNorm(d, cfg.rms_eps) if cfg.qk_norm else None

    def forward(self, h: torch.Tensor, index: int, ctx: AttentionContext) -> torch.Tensor:
        cfg = self.cfg
        T = h.shape[0]
        qkv = linear(self.input_norm(h), self.qkv.weight, self.qkv.bias)  # (T, (Hq + 2 Hkv) D)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q = q.view(T, cfg.num_heads, cfg.head_dim)  # (T, Hq, D)
        k = k.view(T, cfg.num_kv_heads, cfg.head_dim)  # (T, Hkv, D)
        v = v.view(T, cfg.num_kv_heads, cfg.head_dim)  # (T, Hkv, D)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        h = h + linear(ctx.attend(index, q, k, v), self.o.weight, self.o.bias)
        gu = linear(self.post_norm(h), self.gate_up.weight, self.gate_up.bias)  # (T, 2 I)
        return h + linear(swiglu(gu), self.down.weight, self.down.bias)


class DecoderLM(nn.Module):
    """A decoder-only language model; see the module docstring for the calling convention."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_eps)
        self.lm_head = (
            None if cfg.tie_embeddings else nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        )
        self.rope = Rope(cfg.rope, cfg.head_dim)

    @classmethod
    def random(
        cls,
        cfg: ModelConfig,
        *,
        seed: int = 0,
        std: float = 0.02,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> DecoderLM:
        """A model with fresh weights (matrices and embeddings N(0, std), norms 1, biases 0: the
        usual initialisation of Llama-style models) for benchmarks, examples and training from
        scratch; reproducible from `seed`, in eval mode."""
        with torch.device(device):
            model = cls(cfg)
        g = torch.Generator(device=device).manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.fill_(1.0)
                elif name.endswith("bias"):
                    p.zero_()
                else:
                    p.normal_(0.0, std, generator=g)
        return model.to(dtype).eval()

    @property
    def head_weight(self) -> torch.Tensor | PackedWeight:
        return self.embed.weight if self.lm_head is None else self.lm_head.weight

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def hidden_states(self, input_ids: torch.Tensor, ctx: AttentionContext) -> torch.Tensor:
        """Final-norm hidden states (T, H) for flat token ids (T,)."""
        h = self.embed(input_ids)  # (T, H)
        for i, layer in enumerate(self.layers):
            h = layer(h, i, ctx)
        return self.norm(h)

    def forward(
        self,
        input_ids: torch.Tensor,
        ctx: AttentionContext,
        logit_rows: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (R, V) in float32 for the rows `logit_rows` of the flat input (all rows if None)."""
        h = self.embed(input_ids)  # (T, H)
        for i, layer in enumerate(self.layers):
            h = layer(h, i, ctx)
        if logit_rows is not None:
            h = h[logit_rows]  # (R, H)
        return linear(self.norm(h), self.head_weight).float()  # (R, V)

    # ---------------------------------------------------------------- weights

    def load_hf_state_dict(self, sd: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Load weights named as in transformers checkpoints (model.layers.N.self_attn.q_proj...)."""
        own = hf_to_plait_state_dict(sd, self.config)
        if self.lm_head is None:
            own.pop("lm_head.weight", None)
        missing, unexpected = self.load_state_dict(own, strict=False)
        missing = [m for m in missing if not m.startswith("rope")]
        if strict and (missing or unexpected):
            raise ValueError(
                f"checkpoint does not match the {self.config.family} architecture: missing "
                f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}; "
                "check that config.json belongs to these weights"
            )

    @classmethod
    def from_hf(cls, hf_model: Any) -> DecoderLM:
        """Build a plait model with the same weights and dtype as a transformers causal LM."""
        cfg = ModelConfig.from_hf(hf_model.config)
        dtype = next(hf_model.parameters()).dtype
        with torch.device("meta"):
            model = cls(cfg)
        model = model.to_empty(device=next(hf_model.parameters()).device).to(dtype)
        model.rope = Rope(cfg.rope, cfg.head_dim)
        model.load_hf_state_dict(hf_model.state_dict())
        return model.eval()


def hf_to_plait_state_dict(
    sd: dict[str, torch.Tensor], cfg: ModelConfig
) -> dict[str, torch.Tensor]:
    """Map transformers parameter names to plait's fused layout."""
    out: dict[str, torch.Tensor] = {}

    def get(name: str) -> torch.Tensor:
        if name not in sd:
            raise ValueError(
                f"checkpoint is missing {name!r}; the weights are incomplete or corrupt"
            )
        return sd[name]

    out["embed.weight"] = get("model.embed_tokens.weight")
    out["norm.weight"] = get("model.norm.weight")
    if not cfg.tie_embeddings:
        out["lm_head.weight"] = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    for i in range(cfg.num_layers):
        p, a, m = f"model.layers.{i}.", f"model.layers.{i}.self_attn.", f"model.layers.{i}.mlp."
        o = f"layers.{i}."
        out[o + "input_norm.weight"] = get(p + "input_layernorm.weight")
        out[o + "post_norm.weight"] = get(p + "post_attention_layernorm.weight")
        out[o + "qkv.weight"] = torch.cat([get(a + f"{n}_proj.weight") for n in "qkv"])
        if cfg.qkv_bias:
            out[o + "qkv.bias"] = torch.cat([get(a + f"{n}_proj.bias") for n in "qkv"])
        out[o + "o.weight"] = get(a + "o_proj.weight")
        if cfg.o_bias:
            out[o + "o.bias"] = get(a + "o_proj.bias")
        out[o + "gate_up.weight"] = torch.cat(
            [get(m + "gate_proj.weight"), get(m + "up_proj.weight")]
        )
        out[o + "down.weight"] = get(m + "down_proj.weight")
        if cfg.mlp_bias:
            out[o + "gate_up.bias"] = torch.cat(
                [get(m + "gate_proj.bias"), get(m + "up_proj.bias")]
            )
            out[o + "down.bias"] = get(m + "down_proj.bias")
        if cfg.qk_norm:
            out[o + "q_norm.weight"] = get(a + "q_norm.weight")
            out[o + "k_norm.weight"] = get(a + "k_norm.weight")
    return out
