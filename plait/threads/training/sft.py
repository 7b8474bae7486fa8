"""A small AdamW SFT loop over packed trie rows (loss = mean over every trained node of a batch).

Each optimiser step takes a batch of `PackedRow`s (e.g. from `collate.TrieCollator`), runs one
packed forward per row (`context.packed_loss`) and divides the summed loss by the number of
trained nodes. Warm-up is linear, then cosine decay to 10% of the peak learning rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from plait.runtime.model import DecoderLM
from plait.threads.training.context import packed_loss
from plait.threads.training.mask import Backend
from plait.threads.training.packing import PackedRow


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
