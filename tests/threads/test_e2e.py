"""The CPU end-to-end example: a fast smoke run, and a slow run that must learn the format."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "threads_sft_synthetic.py"


def _main():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("threads_sft_synthetic", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod.main


def test_smoke_pipeline_runs_end_to_end() -> None:
    out = _main()(
        [
            "--steps",
            "2",
            "--batch",
            "2",
            "--eval",
            "2",
            "--train-size",
            "20",
            "--row-length",
            "256",
            "--no-progress",
        ]
    )
    assert out["eval_problems"] == 2 and out["steps"] == 2
    assert out["packed_tokens"] < out["unit_tokens"]  # the trie shares contexts
    assert out["dropped_units"] == 0
    for key in ("valid_rate", "activation_ratio", "answer_accuracy", "thread_accuracy"):
        assert 0.0 <= out[key] <= 1.0 and 0.0 <= out[f"ar_{key}"] <= 1.0
    assert out["mean_self_parallelism"] >= 1.0


@pytest.mark.slow
def test_sft_learns_parallel_format_and_self_parallelism() -> None:
    out = _main()(["--steps", "800", "--eval", "30", "--ar-eval", "30", "--no-progress"])
    assert out["final_loss"] < 0.3
    assert out["valid_rate"] >= 0.9
    assert out["activation_ratio"] >= 0.9
    assert out["mean_self_parallelism"] > 1.1
    # run sequentially (max_blocks=0: the orchestrator never forks), the trained model writes
    # every block itself, <Thread> headers and the join included, in the valid format
    assert out["ar_inserted_tokens"] == 0 and out["ar_activation_ratio"] >= 0.9
    assert out["ar_valid_rate"] >= 0.9 and out["ar_thread_count_match_rate"] >= 0.9
