"""The packed-trie training forward on plait's runtime model, its per-unit twin, and SFT.

`TrieContext` is an attention context for `plait.runtime.model.DecoderLM`: RoPE at position =
trie depth and the ancestor-only mask from entry/exit times (see `plait.threads.mask`). One
forward over a `PackedRow` yields, for every trained node, the log-prob of its token given its
ancestors, which is exactly what the unit containing it sees at inference time.

`packed_token_logprobs` is the fast path; `unit_token_logprobs` runs each unit alone with a plain
causal context (the obviously correct twin). `sft_train` is a small AdamW loop over a collator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from plait.runtime.context import causal_context
from plait.runtime.model import DecoderLM
from plait.runtime.rope import Rope, apply_rotary
from plait.threads.mask import Backend, ancestor_attention, ancestor_block_mask
from plait.threads.packing import PackedRow
from plait.threads.trie import as_unit_tokens


class TrieContext:
    """Attention over a packed trie row: positions = depth, key j visible to query i iff ancestor.

    Args:
        rope: the model's Rope.
        positions: (T,) depth of every row.
        entry, exit: (T,) Euler-tour times.
        backend: "chunked" (default; O(chunk * T) memory), "dense" or "flex".
        chunk: query rows per block for "chunked".
        key_start: (T,) first row of each token's document (skips other tries' keys).
    """

    def __init__(
        self,
        rope: Rope,
        positions: torch.Tensor,
        entry: torch.Tensor,
        exit: torch.Tensor,
        *,
        backend: Backend = "chunked",
        chunk: int = 512,
        key_start: torch.Tensor | None = None,
    ) -> None:
        if not positions.shape == entry.shape == exit.shape or positions.dim() != 1:
            raise ValueError(
                "positions, entry and exit must be 1-D and equally long, got "
                f"{tuple(positions.shape)}, {tuple(entry.shape)}, {tuple(exit.shape)}"
            )
        self.rope, self.positions, self.entry, self.exit = rope, positions, entry, exit
        self.backend, self.chunk, self.key_start = backend, chunk, key_start
        self._block_mask: object | None = None  # built on first use ("flex"), shared by layers
        self._tables: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def for_row(
        cls, rope: Rope, row: PackedRow, device: torch.device | str = "cpu", **kw: Any
    ) -> TrieContext:
        return cls(
            rope,
            row.positions.to(device),
            row.entry.to(device),
            row.exit.to(device),
            key_start=row.key_start.to(device),
            **kw,
        )

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if q.dtype not in self._tables:
            cos, sin = self.rope.cos_sin(self.positions, q.dtype)  # (T, R)
            self._tables[q.dtype] = (cos[:, None, :], sin[:, None, :])  # (T, 1, R)
        cos, sin = self._tables[q.dtype]
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)  # (T, H, D)
        if self.backend == "flex" and self._block_mask is None:
            self._block_mask = ancestor_block_mask(self.entry, self.exit)
        return ancestor_attention(
            q,
            k,
            v,
            self.entry,
            self.exit,
            backend=self.backend,
            chunk=self.chunk,
            key_start=self.key_start,
            block_mask=self._block_mask,
        )  # (T, Hq*D)


def packed_token_logprobs(
    model: DecoderLM, row: PackedRow, *, backend: Backend = "chunked", chunk: int = 512
) -> torch.Tensor:
    """(M,) log p(target | ancestors) for every trained node of the row, from one forward."""
    dev = model.device
    ctx = TrieContext.for_row(model.rope, row, dev, backend=backend, chunk=chunk)
    rows = row.loss_rows.to(dev)
    uniq, inverse = torch.unique(rows, return_inverse=True)  # branch points predict >1 child
    logits = model(row.input_ids.to(dev), ctx, logit_rows=uniq)  # (R, V) float32
    logp = torch.log_softmax(logits, dim=-1)[inverse]  # (M, V)
    return logp.gather(1, row.loss_targets.to(dev)[:, None])[:, 0]  # (M,)


def packed_loss(
    model: DecoderLM, row: PackedRow, *, reduction: str = "sum", **kw: object
) -> torch.Tensor:
    """Cross-entropy over every trained node of the row, each counted once ("sum" or "mean")."""
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    nll = -packed_token_logprobs(model, row, **kw)  # type: ignore[arg-type]
    return nll.sum() if reduction == "sum" else nll.mean()


def unit_token_logprobs(model: DecoderLM, unit: object) -> tuple[torch.Tensor, list[int]]:
    """Twin: one unit alone with causal attention at positions 0..len-1.

    Returns:
        (K,) log-probs of the unit's trained completion tokens, and their indices in the unit's
        token list (context + completion).
    """
    u = as_unit_tokens(unit)
    tokens = torch.tensor(u.tokens, dtype=torch.long, device=model.device)
    idx = [len(u.context) + k for k, flag in enumerate(u.trained or []) if flag]
    if not idx:
        return torch.zeros(0, device=model.device), []
    rows = torch.tensor([i - 1 for i in idx], device=model.device)
    logits = model(tokens, causal_context(model.rope, len(u.tokens), model.device), logit_rows=rows)
    logp = torch.log_softmax(logits, dim=-1)  # (K, V)
    return logp.gather(1, tokens[torch.tensor(idx, device=model.device)][:, None])[:, 0], idx


@dataclass(slots=True, kw_only=True)
class SFTConfig:
    """AdamW SFT over packed rows."""

    lr: float = 3e-3  # peak learning rate
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_frac: float = 0.05  # linear warm-up fraction, then cosine to 10% of lr
    steps: int = 200  # optimiser steps
    grad_clip: float = 1.0  # max grad norm (0 = off)
    backend: Backend = "chunked"
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.steps < 1:
            raise ValueError(f"lr must be > 0 and steps >= 1, got lr={self.lr}, steps={self.steps}")
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")


@dataclass(slots=True, kw_only=True)
class SFTResult:
    losses: list[float] = field(default_factory=list)  # per-step mean token loss
    seconds: float = 0.0
    tokens_seen: int = 0  # packed (non-padding) tokens run through the model
    trained_tokens: int = 0  # supervised nodes


def _lr_at(step: int, cfg: SFTConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    frac = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def sft_train(
    model: DecoderLM,
    batches: Iterable[Sequence[PackedRow]],
    cfg: SFTConfig,
    *,
    progress: bool = False,
) -> SFTResult:
    """Train on batches of packed rows; loss = mean over all trained nodes of a batch."""
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay
    )
    res = SFTResult()
    model.train()
    start = time.perf_counter()
    it = iter(batches)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, desc="sft")
    for step in range(cfg.steps):
        rows = next(it)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg)
        n = sum(int(r.loss_rows.numel()) for r in rows)
        total = torch.stack([packed_loss(model, r, backend=cfg.backend) for r in rows]).sum()
        total = total / max(n, 1)
        opt.zero_grad(set_to_none=True)
        total.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        res.losses.append(float(total.detach()))
        res.tokens_seen += sum(r.used for r in rows)
        res.trained_tokens += n
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{float(total):.3f}")
    if bar is not None:
        bar.close()
    res.seconds = time.perf_counter() - start
    model.eval()
    return res


__all__ = [
    "TrieContext",
    "packed_token_logprobs",
    "packed_loss",
    "unit_token_logprobs",
    "SFTConfig",
    "SFTResult",
    "sft_train",
]
