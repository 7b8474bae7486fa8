"""Reward and advantages: hand-computed values, both clip modes, the std-normalisation failure mode."""

from __future__ import annotations

import pytest

from plait.threads.training.reward import (
    RewardConfig,
    group_advantages,
    reward,
    rollout_advantages,
)


def test_paper_vs_code_clip():
    paper = RewardConfig(rho=0.5, rho_clip=0.2, clip_mode="paper")
    code = RewardConfig(rho=0.5, rho_clip=0.2, clip_mode="code")
    assert reward(True, 0.2, paper).accel == pytest.approx(0.1)  # 0.5 * 0.2 < 0.2
    assert reward(True, 0.2, code).accel == pytest.approx(0.1)  # 0.5 * min(0.2, 0.2)
    assert reward(True, 0.6, paper).accel == pytest.approx(0.2)  # min(0.3, 0.2)
    assert reward(True, 0.6, code).accel == pytest.approx(0.1)  # 0.5 * 0.2: at most 0.1
    assert reward(True, 0.3, paper).accel == pytest.approx(0.15)
    assert reward(True, 0.3, code).accel == pytest.approx(0.1)
    assert reward(False, 0.6, paper).total == 0.0  # bonus only when correct
    assert reward(True, 0.6, paper).total == pytest.approx(1.2)


def test_mean_centred_keeps_rho_std_normalised_loses_it():
    etas = [0.0, 0.1, 0.2, 0.3]
    for rho in (0.5, 0.1):
        cfg = RewardConfig(rho=rho, rho_clip=1.0)
        r = [reward(True, e, cfg).total for e in etas]
        adv = group_advantages(r)
        mean_eta = sum(etas) / 4
        assert adv == pytest.approx([rho * (e - mean_eta) for e in etas])
    a = group_advantages(
        [reward(True, e, RewardConfig(rho=0.5, rho_clip=1.0)).total for e in etas],
        std_normalize=True,
    )
    b = group_advantages(
        [reward(True, e, RewardConfig(rho=0.1, rho_clip=1.0)).total for e in etas],
        std_normalize=True,
    )
    assert a == pytest.approx(b, abs=1e-4)  # rho is gone
    assert sum(x * x for x in a) / 4 == pytest.approx(1.0, abs=1e-3)


def test_mixed_group_hand_values():
    cfg = RewardConfig()
    r = [reward(c, e, cfg).total for c, e in [(True, 0.2), (False, 0.5), (True, 0.0), (False, 0.0)]]
    assert r == pytest.approx([1.1, 0.0, 1.0, 0.0])
    assert group_advantages(r) == pytest.approx([1.1 - 0.525, -0.525, 1.0 - 0.525, -0.525])


def test_validation():
    with pytest.raises(ValueError, match="clip_mode"):
        RewardConfig(clip_mode="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eta"):
        reward(True, 1.5)
    with pytest.raises(ValueError, match="at least one"):
        group_advantages([])


def test_incorrect_reward_release_setting_hand_values():
    release = RewardConfig(incorrect_reward=-1.0)
    assert reward(False, 0.6, release).total == -1.0 and reward(False, 0.6, release).accel == 0.0
    assert reward(True, 0.4, release).total == pytest.approx(1.2)  # correct answers unchanged
    outcomes = [(True, 0.4), (True, 0.0), (False, 0.3), (False, 0.0)]
    paper = rollout_advantages(*zip(*outcomes))  # r = 1.2, 1, 0, 0; mean 0.55
    assert paper == pytest.approx([0.65, 0.45, -0.55, -0.55])
    rel = rollout_advantages(*zip(*outcomes), release)  # r = 1.2, 1, -1, -1; mean 0.05
    assert rel == pytest.approx([1.15, 0.95, -1.05, -1.05])
    # the bonus separates the two correct rollouts by 0.2 either way; the correct/wrong gap doubles
    assert paper[0] - paper[1] == pytest.approx(rel[0] - rel[1]) == pytest.approx(0.2)
    assert rel[1] - rel[2] == pytest.approx(2 * (paper[1] - paper[2]))
    # a group of wrong answers has no signal in either setting
    assert rollout_advantages([False, False], [0.5, 0.1], release) == [0.0, 0.0]
    with pytest.raises(ValueError, match="below the correct"):
        RewardConfig(incorrect_reward=1.0)
    with pytest.raises(ValueError, match="one each"):
        rollout_advantages([True], [0.1, 0.2])
