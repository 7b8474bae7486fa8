"""The broadcast loss's gradient == -(1/sum T) * sum_p A_p * grad log pi(tau_p) (per-unit twin)."""

from __future__ import annotations

import random

import pytest
import torch

from plait.runtime.model import DecoderLM
from plait.threads.data.synthetic import random_trajectory
from plait.threads.training.reference import unit_token_logprobs
from plait.threads.training.rl_loss import broadcast_pg_loss, rl_units
from tests.helpers.tiny import tiny_model

VOCAB = 48


@pytest.fixture(scope="module")
def model() -> DecoderLM:
    return tiny_model("qwen2", 3, heads=4, kv_heads=2, head_dim=16, vocab=VOCAB, intermediate=128)


def _grads(model: DecoderLM, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [p for p in model.parameters() if p.requires_grad]
    return list(torch.autograd.grad(loss, params))


def test_gradient_is_advantage_times_score_function(model: DecoderLM) -> None:
    rng = random.Random(0)
    trajs = [random_trajectory(rng, vocab=VOCAB, blocks=2) for _ in range(3)]
    adv = [0.7, -0.2, -0.5]  # mean-centred group advantages
    loss, info = broadcast_pg_loss(model, [t.units for t in trajs], adv, backend="dense")
    got = _grads(model, loss)
    # twin: log pi(tau) as a sum of per-call causal forwards, differentiated separately
    want = None
    n_tokens = 0
    for t, a in zip(trajs, adv):
        logp = sum(unit_token_logprobs(model, u)[0].sum() for u in t.calls)
        n_tokens += sum(sum(u.trained) for u in t.calls)
        g = _grads(model, logp)
        want = [a * x for x in g] if want is None else [w + a * x for w, x in zip(want, g)]
        assert abs(float(logp.detach()) - info.logp[trajs.index(t)]) < 1e-4
    assert info.tokens == n_tokens
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, -g_want / n_tokens, atol=1e-6, rtol=1e-4)
    # the packed layout runs fewer tokens than one row per call
    assert info.packed_tokens < info.unit_tokens


def test_zero_advantages_give_zero_gradient_and_validation(model: DecoderLM) -> None:
    t = random_trajectory(random.Random(1), vocab=VOCAB)
    loss, _ = broadcast_pg_loss(model, [t.units], [0.0])
    assert all(float(g.abs().max()) == 0.0 for g in _grads(model, loss))
    with pytest.raises(ValueError, match="one advantage per trajectory"):
        broadcast_pg_loss(model, [t.units], [1.0, 2.0])
    assert len(rl_units(t.units)) == len(t.units) - 1


def test_rewards_to_advantages_to_loss_pipeline(model: DecoderLM) -> None:
    from plait.threads.training.reward import RewardConfig, group_advantages, reward

    rng = random.Random(5)
    group = [random_trajectory(rng, vocab=VOCAB, blocks=2) for _ in range(4)]
    etas = [
        1 - (len(t.response) - sum(sum(x) - max(x) for x in t.thread_lengths)) / len(t.response)
        for t in group
    ]
    rewards = [reward(True, e, RewardConfig()).total for e in etas]
    adv = group_advantages(rewards)
    assert abs(sum(adv)) < 1e-9
    loss, info = broadcast_pg_loss(model, [t.units for t in group], adv)
    manual = -sum(a * lp for a, lp in zip(adv, info.logp)) / info.tokens
    assert abs(float(loss) - manual) < 1e-5


@pytest.mark.parametrize("incorrect", [0.0, -1.0])
def test_pgrpo_loss_from_outcomes_uses_incorrect_reward(model: DecoderLM, incorrect) -> None:
    from plait.threads.training.reward import RewardConfig
    from plait.threads.training.rl_loss import pgrpo_loss

    rng = random.Random(7)
    trajs = [random_trajectory(rng, vocab=VOCAB) for _ in range(4)]
    correct, etas, groups = [True, False, True, False], [0.2, 0.5, 0.0, 0.0], ["p", "p", "q", "q"]
    cfg = RewardConfig(incorrect_reward=incorrect)
    loss, info, adv = pgrpo_loss(
        model, [t.units for t in trajs], correct, etas, groups=groups, config=cfg
    )
    # per prompt: p has rewards (1.1, incorrect), q has (1.0, incorrect); mean-centred
    gap_p, gap_q = (1.1 - incorrect) / 2, (1.0 - incorrect) / 2
    assert adv == pytest.approx([gap_p, -gap_p, gap_q, -gap_q])
    manual = -sum(a * lp for a, lp in zip(adv, info.logp)) / info.tokens
    assert abs(float(loss.detach()) - manual) < 1e-5
    with pytest.raises(ValueError, match="one of each"):
        pgrpo_loss(model, [t.units for t in trajs], correct[:3], etas)
