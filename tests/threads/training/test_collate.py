"""TrieCollator in a DataLoader: HF 4D-mask inputs give the same loss as plait's packed forward."""

from __future__ import annotations

import random

import torch

from plait.runtime.model import DecoderLM
from plait.threads.data.synthetic import random_trajectory
from plait.threads.training.collate import TrieCollator
from plait.threads.training.context import packed_loss
from tests.helpers.tiny import tiny_hf

VOCAB = 48


def test_collator_batches_and_hf_loss_matches_packed_loss() -> None:
    hf = tiny_hf("llama", 0, heads=4, kv_heads=2, head_dim=16, vocab=VOCAB, intermediate=128)
    model = DecoderLM.from_hf(hf)
    rng = random.Random(0)
    data = [random_trajectory(rng, vocab=VOCAB, blocks=2) for _ in range(4)]
    loader = torch.utils.data.DataLoader(
        data, batch_size=4, collate_fn=TrieCollator(row_length=160)
    )
    batch = next(iter(loader))
    assert batch.input_ids.shape == (len(batch.rows), 160)
    assert batch.report.n_dropped_units == 0
    with torch.no_grad():
        logits = hf(**batch.hf_inputs()).logits  # (B, L, V)
        hf_loss = batch.loss_from_logits(logits, reduction="sum")
        ours = sum(packed_loss(model, r) for r in batch.rows)
    assert abs(float(hf_loss) - float(ours)) < 1e-4 * max(1.0, float(ours))
