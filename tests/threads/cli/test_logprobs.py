"""`plait threads logprobs` end to end: a tiny bf16 HF checkpoint, ThreadWeaver runs of it on
plait's engine with the log-probs it reported, and the command's report (in-process)."""

from __future__ import annotations

import json

import pytest
import torch

from plait.cli import main
from plait.runtime import kernels
from plait.runtime.loading.loader import load_model
from plait.threads.data.records import TrajectoryRecord
from plait.threads.format.codec import ThreadFormat
from tests.helpers.checkpoints import (
    LoadStopped,
    save_hf_dir,
    stop_at_load,
    tiny_hf_model,
    tiny_tokenizer,
)
from tests.helpers.rollouts import threadweaver_run

WHY_NOT = kernels.why_not(torch.device("cpu"), torch.bfloat16, 16)
BLOCK = 16


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A checkpoint and a file of two runs: one whose calls prefill their contexts (exact), one
    whose calls read the K/V the previous call kept (`cache_output`)."""
    d = save_hf_dir(tiny_hf_model("qwen2", seed=3, vocab=272), tiny_tokenizer(),
                    tmp_path_factory.mktemp("ckpt") / "tiny")  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = load_model(d, dtype="bf16").model
    recs = []
    for cache in (False, True):
        run = threadweaver_run(model, BLOCK, cache_output=cache)
        recs.append(TrajectoryRecord(tokens=run.tokens, prompt_len=run.prompt_len,
                                     inserted=run.inserted, logprobs=run.logprobs).to_dict())  # fmt: skip
    path = d.parent / "runs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    yield d, path
    torch.set_num_threads(threads)


def _argv(d, path, *extra):
    return ["threads", "logprobs", str(path), "--model", str(d), "--dtype", "bf16",
            "--tokenizer", "char", "--block-tokens", str(BLOCK), *extra]  # fmt: skip


@pytest.mark.skipif(bool(WHY_NOT), reason=f"needs plait's kernels: {WHY_NOT}")
def test_report(runs, capsys) -> None:
    d, path = runs
    assert main(_argv(d, path, "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    exact, cached = out["per_trajectory"]
    assert out["trajectories"] == 2 and exact["calls"] == 4 and exact["tokens"] > 50
    for row in (exact, cached):
        assert row["trainer"] == 0.0 and 0 < row["packed"] < 0.25  # the autograd twin's rounding
        assert row["recorded_tokens"] == row["tokens"]  # every generated token was recorded
        assert 0 < row["packed_vs_recorded"] < 0.25
    # prefilled calls: the trainer's values are the engine's reported bits
    assert exact["trainer_vs_recorded"] == 0.0 and exact["bitwise_equal"] == exact["tokens"]
    # calls that read kept K/V: the sampler could not be recomputed exactly (reported)
    assert 0 < cached["trainer_vs_recorded"] < 0.25 and cached["bitwise_equal"] < cached["tokens"]
    assert out["trainer_vs_recorded"] == cached["trainer_vs_recorded"]
    # another block size than the sampler's: the "exact" values are not the recorded bits
    assert main(_argv(d, path, "--json", "--block-tokens", "8")) == 0
    assert json.loads(capsys.readouterr().out)["per_trajectory"][0]["trainer_vs_recorded"] > 0
    # text: a line per trajectory and the summary
    assert main(_argv(d, path)) == 0
    text = capsys.readouterr().out
    assert "#0: 4 calls" in text and "vs the recorded log-probs" in text


def test_bad_input(runs, capsys, tmp_path) -> None:
    d, path = runs
    rec = json.loads(path.read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    end = ThreadFormat.char_level().tags.thread_end  # dropped: an unclosed thread
    cases = [
        (_argv(d, path, "--block-tokens", "0"), "--block-tokens must be >= 1"),
        (_argv(d, tmp_path / "missing.jsonl"), "No such file"),
        ({**rec, "logprobs": rec["logprobs"][:-1]}, "'logprobs' needs one number"),
        (
            {
                **rec,
                "tokens": [t for t in rec["tokens"] if t != end],
                "inserted": None,
                "logprobs": None,
            },
            "is not valid",
        ),
        ({"prompt": "Q", "response": "x", "logprobs": [0.0]}, "token-form record"),
    ]
    for argv, words in cases:
        if isinstance(argv, dict):
            bad.write_text(json.dumps(argv) + "\n")
            argv = _argv(d, bad)
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "plait threads logprobs: error:" in err[0] and words in err[0]


@pytest.mark.parametrize("extra,loaded", [([], "auto"), (["--dtype", "bf16"], "bf16"),
                                          (["--dtype", "gguf"], "gguf")])  # fmt: skip
def test_weights_follow_the_sampling_servers_auto_choice(monkeypatch, tmp_path, extra, loaded):  # noqa: ANN001
    seen = stop_at_load(monkeypatch)
    runs = tmp_path / "runs.jsonl"
    runs.write_text("\n")
    with pytest.raises(LoadStopped):
        main(["threads", "logprobs", str(runs), "--model", "m", *extra])
    assert seen == [loaded]
