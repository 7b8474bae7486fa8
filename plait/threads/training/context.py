"""The packed-trie training forward on plait's runtime model: `TrieContext` and the packed loss.

`TrieContext` is an attention context for `plait.runtime.model.DecoderLM`: RoPE at position = trie
depth and the ancestor-only mask from entry/exit times (see `mask.py`). One forward over a
`PackedRow` yields, for every trained node, the log-prob of its token given its ancestors, which is
exactly what the unit containing it sees at inference time. The per-unit twin is `reference.py`.
"""

from __future__ import annotations

from typing import Any

import torch

from plait.runtime.model import DecoderLM
from plait.runtime.rope import Rope, apply_rotary
from plait.threads.training.mask import Backend, ancestor_attention, ancestor_block_mask
from plait.threads.training.packing import PackedRow


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
