"""P-GRPO reward and group advantages (the policy-gradient loss lives in `rl_loss.py`).

r = R_correct + R_accel, with R_correct = 1 for a correct answer and `incorrect_reward` for a wrong
one (0 in the paper, the default; -1 in the release's RL configuration), and, only when correct,
- clip_mode "paper": R_accel = min(rho * eta, rho_clip)     (paper: rho 0.5, rho_clip 0.2; <= 0.2)
- clip_mode "code":  R_accel = rho * min(eta, rho_clip)     (released code: the bonus is <= 0.1)
where eta = 1 - L_longest / L_total is the acceleration ratio. Advantages are mean-centred per
group (Dr. GRPO); dividing by the group std is optional and, when every rollout is correct,
rescales the small acceleration term to unit variance, erasing rho (the ablation of paper Table 5).
With mean-centred advantages, `incorrect_reward = -1` doubles the correct/wrong gap while the speed
bonus stays the same size, so it halves the bonus's weight relative to correctness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(slots=True, kw_only=True)
class RewardConfig:
    rho: float = 0.5  # scale of the acceleration bonus
    rho_clip: float = 0.2  # clip (of rho*eta in "paper" mode, of eta in "code" mode)
    clip_mode: Literal["paper", "code"] = "paper"
    incorrect_reward: float = 0.0  # R_correct of a wrong answer (the release's RL config: -1)

    def __post_init__(self) -> None:
        if not -1e6 < self.incorrect_reward < 1.0:
            raise ValueError(
                f"incorrect_reward must be below the correct answer's reward 1, got "
                f"{self.incorrect_reward} (the paper uses 0, the release -1)"
            )
        if self.rho < 0 or self.rho_clip < 0:
            raise ValueError(f"rho and rho_clip must be >= 0, got {self.rho}, {self.rho_clip}")
        if self.clip_mode not in ("paper", "code"):
            raise ValueError(f"clip_mode must be 'paper' or 'code', got {self.clip_mode!r}")


@dataclass(slots=True, frozen=True, kw_only=True)
class Reward:
    """The parts, logged separately."""

    correct: float
    accel: float
    eta: float

    @property
    def total(self) -> float:
        return self.correct + self.accel


def acceleration_bonus(eta: float, correct: bool, config: RewardConfig) -> float:
    if not 0.0 <= eta < 1.0:
        raise ValueError(f"eta must be in [0, 1), got {eta}; compute it as 1 - latency/total")
    if not correct:
        return 0.0
    if config.clip_mode == "paper":
        return min(config.rho * eta, config.rho_clip)
    return config.rho * min(eta, config.rho_clip)


def reward(correct: bool, eta: float, config: RewardConfig | None = None) -> Reward:
    """Reward of one rollout from its correctness and acceleration ratio eta."""
    cfg = config or RewardConfig()
    base = 1.0 if correct else cfg.incorrect_reward
    return Reward(correct=base, accel=acceleration_bonus(eta, correct, cfg), eta=eta)


def group_advantages(
    rewards: Sequence[float], *, std_normalize: bool = False, eps: float = 1e-6
) -> list[float]:
    """A_i = r_i - mean(r) over one prompt's group; optionally divided by (std + eps)."""
    if not rewards:
        raise ValueError("a group needs at least one reward")
    mean = sum(rewards) / len(rewards)
    adv = [r - mean for r in rewards]
    if std_normalize:
        std = math.sqrt(sum(a * a for a in adv) / len(adv))  # population std, as in GRPO
        adv = [a / (std + eps) for a in adv]
    return adv


def rollout_advantages(
    correct: Sequence[bool],
    etas: Sequence[float],
    config: RewardConfig | None = None,
    *,
    std_normalize: bool = False,
) -> list[float]:
    """Advantages of one prompt's group of rollouts from their correctness and eta."""
    if len(correct) != len(etas):
        raise ValueError(
            f"got {len(correct)} correctness flags for {len(etas)} etas; pass one each"
        )
    rewards = [reward(c, e, config).total for c, e in zip(correct, etas)]
    return group_advantages(rewards, std_normalize=std_normalize)
