"""P-GRPO's broadcast token-mean policy-gradient loss, from one packed forward per trajectory.

A trajectory tau is the list of engine calls (cont_m, comp_m) that produced it; its log-prob is
log pi(tau) = sum_m log pi(comp_m | cont_m) over model-generated completion tokens. With one
advantage A_p per trajectory (mean-centred within its prompt group, see reward.py), broadcast to
every generated token, the loss is

    L = -(1 / sum_p T_p) * sum_p A_p * log pi(tau_p)        (T_p: generated tokens of tau_p)

whose gradient is the exact score-function gradient scaled by 1/sum T (on-policy, one step per
batch: importance ratio 1, no clipping, no KL). Each trajectory's calls are packed into one trie
row, so every context token is run through the model once instead of once per call.
Given the sampling engine's block size (`sampler_block_tokens`), each token's log-prob in the
loss is the engine's exact bits with the packed forward's gradient (`sampler_gap.py`: one extra
no-grad forward per call), so the trainer sees the sampler's policy (any ratio against the
sampler's log-probs is exactly 1 on-policy) and the gradient is unchanged.
The full-trajectory AR unit is an SFT device, not a call: `rl_units` drops it. `pgrpo_loss` starts
from outcomes: rewards (correctness, eta, `RewardConfig` incl. `incorrect_reward`) -> advantages
mean-centred per prompt group -> this loss.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from plait.runtime.model import DecoderLM
from plait.threads.training.mask import Backend
from plait.threads.training.reward import RewardConfig, rollout_advantages
from plait.threads.training.sampler_gap import trajectory_logprobs

U = TypeVar("U")


def rl_units(units: Sequence[U]) -> list[U]:
    """The engine calls of a trajectory: drops a full-trajectory unit (kind/name "full")."""
    return [
        u
        for u in units
        if getattr(u, "kind", None) != "full" and getattr(u, "name", None) != "full"
    ]


@dataclass(slots=True, kw_only=True)
class PGLossInfo:
    """Diagnostics of one loss computation (detached)."""

    tokens: int  # sum_p T_p, the normaliser
    logp: list[float]  # log pi(tau_p) per trajectory (the sampler's, with sampler_block_tokens)
    tokens_per_trajectory: list[int]
    packed_tokens: int  # tokens run through the model (sum of trie sizes)
    unit_tokens: int  # tokens the release's one-row-per-call layout would run
    sampler_gap: float | None = None  # max |packed autograd forward - sampler| (block tokens)
    trainer_gap: float | None = None  # max |loss's log-probs - sampler| (0; block tokens given)


def broadcast_pg_loss(
    model: DecoderLM,
    trajectories: Sequence[Sequence[object]],
    advantages: Sequence[float] | torch.Tensor,
    *,
    backend: Backend = "chunked",
    sampler_block_tokens: int | None = None,
) -> tuple[torch.Tensor, PGLossInfo]:
    """Broadcast token-mean policy-gradient loss (see the module docstring).

    Args:
        model: a DecoderLM (in train mode if you will step an optimiser).
        trajectories: per trajectory, its calls as units (full-trajectory units are dropped).
        advantages: (P,) one advantage per trajectory.
        backend: attention backend of the packed forward.
        sampler_block_tokens: the sampling engine's block size (`EngineConfig.block_tokens`);
            if given, the loss's log-probs are the engine's exact bits with the packed forward's
            gradient, `info.sampler_gap` reports the largest |packed forward - engine| log-prob
            and `info.trainer_gap` the largest |loss's log-prob - engine| (0); see
            `sampler_gap.py` (one extra no-grad forward per call).

    Returns:
        (scalar loss, info).
    """
    adv = torch.as_tensor(advantages, dtype=torch.float32).flatten()
    if adv.numel() != len(trajectories):
        raise ValueError(
            f"got {adv.numel()} advantages for {len(trajectories)} trajectories; pass one "
            "advantage per trajectory (broadcast to all its tokens)"
        )
    terms, logps, counts = [], [], []
    packed = unit_tokens = 0
    gaps: list[tuple[float | None, float | None]] = []
    for units, a in zip(trajectories, adv.tolist()):
        calls = rl_units(units)
        if not calls:
            raise ValueError("a trajectory has no engine calls; drop it from the batch")
        tl = trajectory_logprobs(
            model, calls, block_tokens=sampler_block_tokens, backend=backend
        )  # (T_p,) values
        packed += len(tl.flat)
        unit_tokens += sum(len(p) for p in tl.flat.unit_paths)
        total = tl.values.sum()
        terms.append(a * total)
        logps.append(float(total.detach()))
        counts.append(int(tl.values.numel()))
        gaps.append((tl.sampler_gap, tl.trainer_gap))
    n = sum(counts)
    if n == 0:
        raise ValueError("no model-generated tokens in the batch; nothing to train")
    loss = -torch.stack(terms).sum() / n
    exact = sampler_block_tokens is not None
    return loss, PGLossInfo(
        tokens=n,
        logp=logps,
        tokens_per_trajectory=counts,
        packed_tokens=packed,
        unit_tokens=unit_tokens,
        sampler_gap=max(g[0] or 0.0 for g in gaps) if exact else None,
        trainer_gap=max(g[1] or 0.0 for g in gaps) if exact else None,
    )


def pgrpo_loss(
    model: DecoderLM,
    trajectories: Sequence[Sequence[object]],
    correct: Sequence[bool],
    etas: Sequence[float],
    *,
    groups: Sequence[Hashable] | None = None,
    config: RewardConfig | None = None,
    std_normalize: bool = False,
    backend: Backend = "chunked",
    sampler_block_tokens: int | None = None,
) -> tuple[torch.Tensor, PGLossInfo, list[float]]:
    """P-GRPO from outcomes: per-rollout reward -> group advantages -> `broadcast_pg_loss`.

    Args:
        trajectories, correct, etas: one entry per rollout (eta = 1 - critical path / total).
        groups: the prompt of each rollout (advantages are centred within a prompt's rollouts);
            None = one group.
        config: reward settings (`incorrect_reward`, clip mode, rho).
        sampler_block_tokens: see `broadcast_pg_loss` (the sampler's exact log-probs; reports
            `info.sampler_gap` and `info.trainer_gap`).

    Returns:
        (scalar loss, info, the advantages used).
    """
    n = len(trajectories)
    keys = [0] * n if groups is None else list(groups)
    if not len(correct) == len(etas) == len(keys) == n:
        raise ValueError(
            f"got {n} trajectories, {len(correct)} correctness flags, {len(etas)} etas and "
            f"{len(keys)} group ids; pass one of each per rollout"
        )
    adv = [0.0] * n
    for key in dict.fromkeys(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        got = rollout_advantages([correct[i] for i in idx], [etas[i] for i in idx], config,
                                 std_normalize=std_normalize)  # fmt: skip
        for i, a in zip(idx, got):
            adv[i] = a
    loss, info = broadcast_pg_loss(
        model, trajectories, adv, backend=backend, sampler_block_tokens=sampler_block_tokens
    )
    return loss, info, adv
