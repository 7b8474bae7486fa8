"""Batch invariance of the evaluation harness: `--batch 1`, `4` and `16` give the same records
(answers, tokens, steps; timings aside), sequential and Hogwild-2 problems solved side by side
(bf16 where plait's kernels run: the engine's numerics do not depend on the batch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from plait.eval.datasets import Problem
from plait.hogwild.evaluate import EvalSettings, Method, evaluate
from plait.runtime import kernels
from tests.helpers.toy import ToyTokenizer, toy_model

WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 16)
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"needs plait's kernels: {WHY_NOT}")
PROBLEMS = [Problem(f"p{i}", f"What is {i} + {2 * i + 1}?", str(3 * i + 1)) for i in range(5)]
METHODS = [Method.parse("sequential"), Method.parse("hogwild-2")]


def _settings() -> EvalSettings:
    common = {"finisher_max_tokens": 3, "instructions": "Be brief."}
    return EvalSettings(
        budgets=(6, 12),
        hogwild={**common, "seed": 3},
        sequential={**common, "prompt": "boxed"},
        describe={"model": "toy"},
    )


def _records(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in (path / "records.jsonl").read_text().splitlines()]
    timing = ("seconds", "time", "elapsed", "_s")
    rows = [{k: v for k, v in r.items() if not any(t in k for t in timing)} for r in rows]
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))


def test_batch_1_4_16_give_the_same_records(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = toy_model("llama", seed=2, dtype=torch.bfloat16)
        got = {}
        for batch in (1, 4, 16):
            out = tmp_path / f"b{batch}"
            evaluate(model, ToyTokenizer(), PROBLEMS, METHODS, _settings(), out, batch=batch,
                     progress=False)  # fmt: skip
            got[batch] = _records(out)
    finally:
        torch.set_num_threads(threads)
    assert len(got[1]) == len(PROBLEMS) * len(METHODS) * 2
    assert got[4] == got[1] and got[16] == got[1]
