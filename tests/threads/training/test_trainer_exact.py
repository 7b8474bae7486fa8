"""Trainer = sampler, exactly: with the sampling engine's block size the packed training forward's
log-prob of every generated token is the bits the engine reported while sampling it, and the
gradient is the packed autograd forward's, unchanged (bf16 where plait's kernels run).

Trajectories: fork/join-shaped raw engine calls, calls sharing a prefix (two with the same
context and seed), and a real ThreadWeaver orchestrator run on `EngineBackend`. Negative
controls: the packed-only path and a wrong block size give other values."""

from __future__ import annotations

import math

import pytest
import torch

from plait.runtime import kernels
from plait.runtime.engine import Engine, EngineConfig
from plait.threads.format.codec import ThreadFormat
from plait.threads.training.rl_loss import broadcast_pg_loss, rl_units
from plait.threads.training.sampler_gap import TrainerLogprobs, sampler_values, trajectory_logprobs
from plait.threads.training.trie import as_unit_tokens
from plait.threads.training.units import extract_units
from tests.helpers.rollouts import Call, engine_call, fork_join_calls, threadweaver_run
from tests.helpers.tiny import tiny_model

WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 16)
BLOCK = 16
needs_kernels = pytest.mark.skipif(bool(WHY_NOT), reason=f"needs plait's kernels: {WHY_NOT}")


@pytest.fixture(scope="module")
def model():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield tiny_model("qwen2", seed=7, vocab=272).to(torch.bfloat16)  # 272 > the char format's ids
    torch.set_num_threads(threads)


def _shared_prefix_calls(engine: Engine, context: list[int]) -> list[Call]:
    """Calls on one context (two with the same seed: identical tokens), and one continuing it."""
    same = [engine_call(engine, context, seed=11) for _ in range(2)]
    other = engine_call(engine, context, seed=12)
    longer = engine_call(engine, context + same[0][0].completion[:3] + [9], seed=13)
    return [*same, other, longer]


def _run_calls(model, cache_output: bool = False) -> list[Call]:
    """The orchestrator run's calls as units (from the record, as a trainer reads it) with the
    log-probs it recorded."""
    run = threadweaver_run(model, BLOCK, cache_output=cache_output)
    f = ThreadFormat.char_level()
    units = rl_units(extract_units(run.tokens, f, prompt_len=run.prompt_len, inserted=run.inserted))
    assert [u.kind for u in units] == ["seq", "thread", "thread", "seq"]
    assert [u.context for u in units] == [c.context for c in run.calls]  # the engine's calls
    p = run.prompt_len
    lps = [[run.logprobs[u.span[0] - p + j] for j, g in enumerate(u.generated) if g] for u in units]
    assert all(x is not None for lp in lps for x in lp)
    return [(u, lp) for u, lp in zip(units, lps)]  # type: ignore[misc]


@pytest.fixture(scope="module")
def trajectories(model) -> list[list[Call]]:
    engine = Engine(model, config=EngineConfig(block_tokens=BLOCK, step_tokens=40))
    prompt = [3 + (i * 7) % 250 for i in range(50)]
    return [
        fork_join_calls(engine, prompt, 0),
        _shared_prefix_calls(engine, prompt[:37]),
        _run_calls(model),
    ]


def _per_call(tl: TrainerLogprobs, calls: list[Call], what: torch.Tensor) -> list[torch.Tensor]:
    """`what` (M,) per trained node, read back per call in its generated tokens' order."""
    at = {n: i for i, n in enumerate(tl.row.loss_nodes.tolist())}
    out = []
    for k, path, n_ctx in zip(tl.flat.kept, tl.flat.unit_paths, tl.flat.unit_context_len):
        unit = as_unit_tokens(calls[k][0])
        nodes = [path[n_ctx + j] for j, g in enumerate(unit.trained or []) if g]
        out.append(what.detach()[[at[n] for n in nodes]])
    return out


def _bits(x: torch.Tensor) -> torch.Tensor:
    return x.detach().float().contiguous().view(torch.int32)


def _same_bits(a: torch.Tensor, b: list[float]) -> bool:
    return torch.equal(_bits(a), _bits(torch.tensor(b, dtype=torch.float32)))


@needs_kernels
def test_trainer_values_are_the_engine_bits(model, trajectories) -> None:
    for traj in trajectories:
        units = [u for u, _ in traj]
        tl = trajectory_logprobs(model, units, block_tokens=BLOCK, backend="dense")
        assert tl.values.requires_grad and tl.trainer_gap == 0.0 and tl.shared_spread == 0.0
        for got, (_, reported) in zip(_per_call(tl, traj, tl.values), traj):
            assert _same_bits(got, reported)  # bitwise, every call, shared nodes included
            assert torch.equal(torch.exp(got - torch.tensor(reported)), torch.ones(len(got)))
        # negative controls: the packed forward alone, and another block size, are not the bits
        assert tl.sampler_gap is not None and tl.sampler_gap > 0
        packed = _per_call(tl, traj, tl.packed)
        assert not all(_same_bits(g, r) for g, (_, r) in zip(packed, traj))
        wrong = trajectory_logprobs(model, units, block_tokens=BLOCK // 2, backend="dense")
        assert not all(
            _same_bits(g, r) for g, (_, r) in zip(_per_call(wrong, traj, wrong.values), traj)
        )


@needs_kernels
def test_same_context_calls_share_bits(trajectories) -> None:
    (a, lp_a), (b, lp_b) = trajectories[1][:2]
    assert a.context == b.context and a.completion == b.completion
    assert _same_bits(torch.tensor(lp_a), lp_b)  # what the trie's one node per token relies on


@needs_kernels
def test_gradient_is_the_packed_forwards(model, trajectories) -> None:
    trajs = [[u for u, _ in t] for t in trajectories]
    adv = [0.6, -0.4, -0.2]
    params = [p for p in model.parameters() if p.requires_grad]
    exact_loss, info = broadcast_pg_loss(model, trajs, adv, sampler_block_tokens=BLOCK)
    packed_loss, base = broadcast_pg_loss(model, trajs, adv)
    g_exact = torch.autograd.grad(exact_loss, params)
    g_packed = torch.autograd.grad(packed_loss, params)
    assert all(torch.equal(x, y) for x, y in zip(g_exact, g_packed))  # same graph, same bits
    assert all(bool(torch.isfinite(g).all()) for g in g_exact)
    assert sum(float(g.float().abs().sum()) for g in g_exact) > 0
    assert info.trainer_gap == 0.0 and info.sampler_gap is not None and info.sampler_gap > 0
    assert base.trainer_gap is None and base.sampler_gap is None
    reported = []  # log pi(tau) as sampled, a token generated twice (same path) counted once
    for t in trajectories:
        seen = {}
        for u, lp in t:
            gen = [j for j, g in enumerate(as_unit_tokens(u).trained or []) if g]
            seen |= {tuple(u.context + u.completion[: j + 1]): x for j, x in zip(gen, lp)}
        reported.append(sum(seen.values()))
    for got, want in zip(info.logp, reported):
        assert math.isclose(got, want, rel_tol=1e-5)
    assert exact_loss.item() != packed_loss.item()  # the values moved, the gradient did not


def test_sampler_values_edges_and_twin() -> None:
    """Values: the exact bits (-0.0, inf, NaN kept); gradient: identity to `packed`. The twin
    `exact + (packed - packed.detach())` agrees on ordinary numbers, and shows the two edges."""
    exact = torch.tensor([-1.5, -0.0, 0.0, -float("inf"), float("nan"), -3.25])
    packed = torch.tensor([-1.4, -0.01, -0.02, -9.0, -1.0, -float("inf")], requires_grad=True)
    out = sampler_values(packed, exact)
    assert torch.equal(_bits(out), _bits(exact))
    weights = torch.arange(1.0, 7.0)
    (grad,) = torch.autograd.grad((out * weights).sum(), packed)
    assert torch.equal(grad, weights)
    twin = exact + (packed - packed.detach())
    (twin_grad,) = torch.autograd.grad((twin * weights).sum(), packed)
    assert torch.equal(twin_grad, grad)
    assert torch.equal(_bits(twin[[0, 2, 3]]), _bits(exact[[0, 2, 3]]))
    assert _bits(twin[1]) != _bits(exact[1]) and bool(torch.isnan(twin[5]))  # -0 -> +0; inf-inf
    with pytest.raises(ValueError, match="must match"):
        sampler_values(packed, exact[:3])


@pytest.mark.model
@needs_kernels
def test_smollm2_fork_join_calls_train_on_the_engine_bits() -> None:
    """The issue's model: SmolLM2-135M in bf16, a fork/join-shaped trajectory of seeded engine
    calls (64-token blocks, prompts past one block): the trainer's values are the engine's bits,
    the packed autograd forward is not."""
    from plait.runtime.loading.bundled import BUNDLED, bundled_status
    from plait.runtime.loading.loader import load_model

    if not bundled_status(BUNDLED["smollm2-135m"]).installed:
        pytest.skip("smollm2-135m is not installed (make install)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loaded = load_model("smollm2-135m", dtype="bf16")
        engine = Engine(loaded.model, config=EngineConfig(block_tokens=64, step_tokens=256))
        text = "The history of the lighthouse begins with fires lit on hills to guide ships. " * 5
        traj = fork_join_calls(engine, list(loaded.tokenizer.encode(text)), 5)
        tl = trajectory_logprobs(loaded.model, [u for u, _ in traj], block_tokens=64)
        for got, (_, reported) in zip(_per_call(tl, traj, tl.values), traj):
            assert _same_bits(got, reported)
        assert tl.trainer_gap == 0.0 and tl.sampler_gap is not None and tl.sampler_gap > 0
    finally:
        torch.set_num_threads(threads)
