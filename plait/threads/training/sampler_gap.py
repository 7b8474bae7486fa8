"""Trainer = sampler: the log-probs P-GRPO trains on are the bits the engine sampled with.

On-policy RL assumes the trainer's log pi(token) is the sampler's. plait's engine is batch
invariant (`plait.runtime.kernels.batch_invariant`), so the sampler's bits for any engine call
(context -> completion) can be recomputed exactly, in one no-grad forward over the engine's
layout: `plait.runtime.engine.scoring.sampler_logprobs`. The packed trie forward the trainer
differentiates runs other kernels (masked dense attention over a trie, torch GEMM), so its values
are close to the sampler's but not equal (0.05 nats on the tiny bf16 test model).

`trajectory_logprobs(model, calls, block_tokens=B)` gives both, per trained trie node (the packed
row's loss order), for an engine with `EngineConfig.block_tokens == B`:

- `values`: what the loss sums. With `block_tokens`, value = the sampler's bits, gradient = the
  packed autograd forward's at the same parameters (`sampler_values`: a copy of the bits forward,
  the identity backward; `exact + (lp - lp.detach())` would do the same except at the edges: it
  turns a -0.0 bit into +0.0 and an infinite packed value into NaN). The gradient is the packed
  forward's exactly (same graph), so the loss's gradient does not change; its value, the
  trajectory log-probs and any ratio against the sampler's log-probs (exactly 1 on-policy) do.
  Without `block_tokens`: the packed forward itself (values and gradient).
- `packed`: the packed forward, detached; `sampler`: the sampler's bits per node.
- `sampler_gap` = max |packed - sampler| (the autograd twin's distance to the engine) and
  `trainer_gap` = max |values - sampler| (0: the trainer's values are the sampler's).

A node two calls generated (the trie trains it once) takes the bits of the first of them in call
order; calls with the same context give the same bits there (tested), and `shared_spread` reports
the largest difference otherwise. Cost: one extra no-grad forward per call (a prefill of its
context and completion), next to the one packed forward per trajectory. `broadcast_pg_loss` and
`pgrpo_loss` take this path when given `sampler_block_tokens`;
tests/threads/training/test_sampler_gap.py and test_trainer_exact.py check it on engine output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from plait.runtime.engine.scoring import sampler_logprobs
from plait.runtime.model import DecoderLM
from plait.threads.training.context import packed_token_logprobs
from plait.threads.training.mask import Backend
from plait.threads.training.packing import PackedRow, pack_row
from plait.threads.training.trie import FlatTrie, UnitTokens, as_unit_tokens, build_trie


def sampler_call_logprobs(model: DecoderLM, unit: object, *, block_tokens: int) -> torch.Tensor:
    """(K,) the sampler's log-probs of the unit's model-generated completion tokens, in order."""
    u = as_unit_tokens(unit)
    lp = sampler_logprobs(model, u.context, u.completion, block_tokens=block_tokens)  # (n,)
    keep = [k for k, flag in enumerate(u.trained or []) if flag]
    return lp[keep]


class _SamplerValues(torch.autograd.Function):
    """Forward: a copy of `exact` (every bit, -0.0 and NaN included); backward: identity to
    `packed`, nothing to `exact`."""

    @staticmethod
    def forward(ctx: Any, packed: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
        return exact.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def sampler_values(packed: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """(M,) the values of `exact` with the gradient of `packed` (see the module docstring)."""
    if packed.shape != exact.shape or packed.dtype != exact.dtype:
        raise ValueError(
            f"packed {tuple(packed.shape)} {packed.dtype} and exact {tuple(exact.shape)} "
            f"{exact.dtype} log-probs must match in shape and dtype"
        )
    out: torch.Tensor = _SamplerValues.apply(packed, exact.detach())
    return out


@torch.no_grad()
def node_sampler_logprobs(
    model: DecoderLM, calls: Sequence[UnitTokens], flat: FlatTrie, row: PackedRow, *,
    block_tokens: int,
) -> tuple[torch.Tensor, float]:  # fmt: skip
    """(M,) the sampler's bits of every trained node of `row` (= `pack_row([flat])`), in its
    loss order, and the largest difference between two calls' bits at a node both generated
    (the first call in order gives the node's bits)."""
    parts: list[torch.Tensor] = []
    chosen: dict[int, int] = {}  # node -> index into torch.cat(parts)
    first: dict[int, float] = {}
    spread, off = 0.0, 0
    for k, path, n_ctx in zip(flat.kept, flat.unit_paths, flat.unit_context_len):
        unit = calls[k]
        nodes = [path[n_ctx + j] for j, flag in enumerate(unit.trained or []) if flag]
        if not nodes:
            continue
        got = sampler_call_logprobs(model, unit, block_tokens=block_tokens)  # (K,)
        for j, (node, v) in enumerate(zip(nodes, got.tolist())):
            if node in chosen:
                spread = max(spread, abs(first[node] - v))
            else:
                chosen[node], first[node] = off + j, v
        parts.append(got)
        off += len(nodes)
    want = row.loss_nodes.tolist()
    if not want:
        return torch.zeros(0, dtype=torch.float32, device=model.device), spread
    idx = torch.tensor([chosen[n] for n in want], dtype=torch.long, device=model.device)
    return torch.cat(parts)[idx], spread  # (M,)


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float() - b.float()).abs().max()) if a.numel() else 0.0


@dataclass(slots=True, kw_only=True)
class TrainerLogprobs:
    """One trajectory's log-probs per trained trie node, in the packed row's loss order (M,)."""

    calls: list[UnitTokens]  # the trajectory's engine calls
    flat: FlatTrie  # the calls as one trie
    row: PackedRow  # `pack_row([flat])`
    values: torch.Tensor  # (M,) what the loss sums (see the module docstring), with grad
    packed: torch.Tensor  # (M,) the packed autograd forward, detached
    sampler: torch.Tensor | None = None  # (M,) the sampler's bits (block_tokens given)
    sampler_gap: float | None = None  # max |packed - sampler|
    trainer_gap: float | None = None  # max |values - sampler| (0 when block_tokens is given)
    shared_spread: float = 0.0  # max |call a - call b| sampler bits at a node both generated

    def per_call(self, per_node: torch.Tensor) -> list[torch.Tensor]:
        """`per_node` (M,) read back per call: (K_m,) at call m's generated tokens, in order."""
        at = {n: i for i, n in enumerate(self.row.loss_nodes.tolist())}
        out = [per_node.new_zeros(0)] * len(self.calls)
        for k, path, n_ctx in zip(self.flat.kept, self.flat.unit_paths, self.flat.unit_context_len):
            gen = [path[n_ctx + j] for j, flag in enumerate(self.calls[k].trained or []) if flag]
            out[k] = per_node[torch.tensor([at[n] for n in gen], dtype=torch.long)]
        return out


def trajectory_logprobs(
    model: DecoderLM,
    calls: Sequence[object],
    *,
    block_tokens: int | None = None,
    backend: Backend = "chunked",
) -> TrainerLogprobs:
    """One packed forward over the trajectory's engine calls (a trie) and, given the sampling
    engine's `block_tokens`, the sampler's bits as the values (see the module docstring)."""
    units = [as_unit_tokens(u) for u in calls]
    flat = build_trie(units)
    row = pack_row([flat])
    lp = packed_token_logprobs(model, row, backend=backend)  # (M,) autograd
    if block_tokens is None:
        return TrainerLogprobs(calls=units, flat=flat, row=row, values=lp, packed=lp.detach())
    exact, spread = node_sampler_logprobs(model, units, flat, row, block_tokens=block_tokens)
    values = sampler_values(lp, exact)
    return TrainerLogprobs(
        calls=units, flat=flat, row=row, values=values, packed=lp.detach(), sampler=exact,
        sampler_gap=_max_abs(lp, exact), trainer_gap=_max_abs(values, exact),
        shared_spread=spread,
    )  # fmt: skip


@torch.no_grad()
def sampler_gap(
    model: DecoderLM,
    trajectories: Sequence[Sequence[object]],
    *,
    block_tokens: int,
    backend: Backend = "chunked",
) -> float:
    """Max |packed trainer log-prob - sampler log-prob| over the generated tokens of every call
    (per trajectory its engine calls: no full-trajectory unit, see `rl_loss.rl_units`)."""
    gaps = [
        trajectory_logprobs(model, calls, block_tokens=block_tokens, backend=backend).sampler_gap
        for calls in trajectories
    ]
    return max([g for g in gaps if g is not None], default=0.0)
