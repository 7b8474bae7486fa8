"""Packed-trie forward == per-unit causal forwards (tiny Llama and Qwen2, fp32), plus controls.

The per-unit reference is the transformers model itself (an independent implementation), run on
each unit alone with plain causal attention and positions 0..len-1. The packed side is plait's
DecoderLM with a TrieContext (positions = depth, ancestor-only mask), one forward per row.
"""

from __future__ import annotations

import random

import pytest
import torch

from plait.threads.data.synthetic import random_trajectory
from plait.threads.training.context import TrieContext, packed_loss, packed_token_logprobs
from plait.threads.training.packing import pack_row, pack_rows
from plait.threads.training.reference import unit_token_logprobs
from plait.threads.training.trie import build_trie
from tests.helpers.tiny import tiny_pair

VOCAB = 64


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def models(request):
    return tiny_pair(
        request.param, vocab=VOCAB, intermediate=128, max_position=512, rope_theta=10000.0
    )


def _packed_logits(model, row, causal_positions=False, mask_kind="ancestor"):
    pos = torch.arange(row.length) if causal_positions else row.positions
    if mask_kind == "ancestor":
        ctx = TrieContext(model.rope, pos, row.entry, row.exit, backend="dense")
    else:  # plain causal mask over the flat row (negative control)
        ctx = TrieContext(
            model.rope, pos, row.entry, torch.full_like(row.exit, row.length - 1), backend="dense"
        )
    return model(row.input_ids, ctx)  # (L, V)


def _max_unit_error(hf, model, trajs, **kw) -> tuple[float, int]:
    """Max |packed - per-unit| over every completion token of every unit; units compared."""
    flats = [build_trie(t) for t in trajs]
    row = pack_row(flats, sum(len(f) for f in flats) + 5)  # several tries + padding in one row
    with torch.no_grad():
        packed = _packed_logits(model, row, **kw)
    err, n, off = 0.0, 0, 0
    for units, flat in zip(trajs, flats):
        for unit, path in zip(units, flat.unit_paths):
            ids = torch.tensor([unit.tokens])
            with torch.no_grad():
                ref = hf(input_ids=ids).logits[0]  # (len, V) causal, positions 0..len-1
            n_ctx = len(unit.context)
            rows = [off + path[n_ctx + k - 1] for k in range(len(unit.completion))]
            got = packed[rows]
            want = ref[n_ctx - 1 : len(unit.tokens) - 1]
            err = max(err, float((got - want).abs().max()))
            n += 1
        off += len(flat)
    return err, n


@pytest.mark.parametrize("seed", range(3))
def test_packed_forward_equals_per_unit_forwards(models, seed: int) -> None:
    hf, model = models
    rng = random.Random(seed)
    trajs = [
        random_trajectory(rng, vocab=VOCAB, blocks=rng.randint(2, 3), threads=(2, 4)).units
        for _ in range(2)
    ]
    err, n = _max_unit_error(hf, model, trajs)
    assert n >= 2 * (1 + 2 * 3 + 1)
    assert err < 1e-5, f"packed vs per-unit logits differ by {err}"


def test_negative_controls_fail(models) -> None:
    hf, model = models
    trajs = [random_trajectory(random.Random(1), vocab=VOCAB, blocks=2).units]
    err_pos, _ = _max_unit_error(hf, model, trajs, causal_positions=True)
    err_mask, _ = _max_unit_error(hf, model, trajs, mask_kind="causal")
    assert err_pos > 1e-3, "plain causal positions must break sibling threads"
    assert err_mask > 1e-3, "a plain causal mask must break sibling threads"


def test_packed_loss_equals_sum_of_unique_unit_losses(models) -> None:
    _, model = models
    rng = random.Random(4)
    trajs = [random_trajectory(rng, vocab=VOCAB, blocks=3).units for _ in range(3)]
    rows, report = pack_rows(trajs, row_length=400)
    assert report.n_dropped_units == 0 and report.rows >= 1
    with torch.no_grad():
        packed = sum(float(packed_loss(model, r)) for r in rows)
        unique: dict[tuple, float] = {}
        for units in trajs:
            for unit in units:
                lp, idx = unit_token_logprobs(model, unit)
                for v, i in zip(lp.tolist(), idx):
                    key = tuple(unit.tokens[: i + 1])  # a trie node = its root path
                    if key in unique:
                        assert abs(unique[key] - v) < 1e-5
                    unique[key] = v
    expected = -sum(unique.values())
    assert sum(int(r.loss_rows.numel()) for r in rows) == len(unique)
    assert abs(packed - expected) < 1e-5 * max(1.0, abs(expected)), (packed, expected)


def test_backends_give_same_logprobs(models) -> None:
    _, model = models
    trajs = [random_trajectory(random.Random(9), vocab=VOCAB, blocks=2).units for _ in range(2)]
    rows, _ = pack_rows(trajs, row_length=300)
    with torch.no_grad():
        ref = packed_token_logprobs(model, rows[0], backend="dense")
        for backend, chunk in (("chunked", 16), ("flex", 1024)):
            got = packed_token_logprobs(model, rows[0], backend=backend, chunk=chunk)
            torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_rows_split_tries_and_report_drops() -> None:
    rng = random.Random(2)
    trajs = [random_trajectory(rng, vocab=VOCAB, blocks=2).units for _ in range(5)]
    longest = max(len(build_trie(t)) for t in trajs)
    rows, report = pack_rows(trajs, row_length=longest)
    assert report.rows == len(rows) >= 2
    assert sorted(d for r in rows for d in r.docs) == list(range(5))
    assert report.tokens == sum(len(build_trie(t)) for t in trajs)
    full_len = len(trajs[0][0].tokens)
    _, small = pack_rows(trajs[:1], row_length=full_len + 2)
    assert small.n_dropped_units > 0 and small.dropped_trajectories == []
    with pytest.raises(ValueError, match="row_length"):
        pack_rows(trajs, row_length=0)
