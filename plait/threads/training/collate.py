"""A collator for a standard training loop: trajectories in, packed trie rows out.

Use as a `torch.utils.data.DataLoader(collate_fn=TrieCollator(...))` over a dataset whose items
are trajectories (a list of units, full-trajectory unit first, or any object with `.units`).
Each batch is a `TrieBatch`: the packed rows (for plait's runtime forward, see
`plait.threads.training.context.packed_loss`), stacked (B, L) tensors, the loss index as (batch, row,
target) triples, and the packing report (units dropped whole on overflow).

`TrieBatch.hf_inputs()` gives transformers-style inputs (input_ids, position_ids and a 4D additive
mask), which materialises B x L x L floats: for small rows and tests only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from plait.threads.training.mask import dense_mask
from plait.threads.training.packing import PackedRow, PackReport, pack_rows


@dataclass(slots=True, kw_only=True)
class TrieBatch:
    rows: list[PackedRow]
    input_ids: torch.Tensor  # (B, L)
    position_ids: torch.Tensor  # (B, L)
    entry: torch.Tensor  # (B, L)
    exit: torch.Tensor  # (B, L)
    loss_batch: torch.Tensor  # (M,) row of the batch
    loss_rows: torch.Tensor  # (M,) position in the row whose logits predict the target
    loss_targets: torch.Tensor  # (M,)
    report: PackReport

    def hf_inputs(self) -> dict[str, torch.Tensor]:
        """Inputs for a transformers causal LM with an explicit 4D mask (small L only)."""
        masks = [dense_mask(e, x) for e, x in zip(self.entry, self.exit)]  # each (L, L)
        allowed = torch.stack(masks)[:, None]  # (B, 1, L, L)
        additive = torch.zeros(allowed.shape, dtype=torch.float32)
        additive.masked_fill_(~allowed, torch.finfo(torch.float32).min)
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "attention_mask": additive,
        }

    def loss_from_logits(self, logits: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy from full (B, L, V) logits: target t at (b, r) uses logits[b, r]."""
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        picked = logits[self.loss_batch, self.loss_rows].float()  # (M, V)
        return torch.nn.functional.cross_entropy(picked, self.loss_targets, reduction=reduction)


@dataclass(slots=True, kw_only=True)
class TrieCollator:
    """Packs a list of trajectories into rows of `row_length` tokens (several tries per row)."""

    row_length: int
    pad_id: int = 0
    min_rows: int = 0  # emit at least this many rows (padding rows) for fixed batch shapes

    def __post_init__(self) -> None:
        if self.row_length < 1:
            raise ValueError(f"row_length must be >= 1, got {self.row_length}")

    def __call__(self, items: Sequence[object]) -> TrieBatch:
        trajectories = [list(getattr(it, "units", it)) for it in items]  # type: ignore[call-overload]
        rows, report = pack_rows(trajectories, self.row_length, pad_id=self.pad_id)
        while len(rows) < self.min_rows:
            rows += pack_rows([], self.row_length)[0] or [_empty_row(self.row_length, self.pad_id)]
        if not rows:
            raise ValueError(
                "no trajectory fitted in a row; raise row_length (the full-trajectory unit alone "
                f"must fit in {self.row_length} tokens)"
            )
        lb = torch.cat([torch.full_like(r.loss_rows, b) for b, r in enumerate(rows)])
        return TrieBatch(
            rows=rows,
            input_ids=torch.stack([r.input_ids for r in rows]),
            position_ids=torch.stack([r.positions for r in rows]),
            entry=torch.stack([r.entry for r in rows]),
            exit=torch.stack([r.exit for r in rows]),
            loss_batch=lb,
            loss_rows=torch.cat([r.loss_rows for r in rows]),
            loss_targets=torch.cat([r.loss_targets for r in rows]),
            report=report,
        )


def _empty_row(length: int, pad_id: int) -> PackedRow:
    from plait.threads.training.packing import pack_row

    return pack_row([], length, pad_id=pad_id)
