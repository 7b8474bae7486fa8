"""`plait threads ...` end to end on small files (in-process, char tokenizer)."""

from __future__ import annotations

import json
import sys

import pytest

from plait.cli import main
from plait.threads.format.render import BlockSpec, render
from tests.helpers.threads import vllm_like


@pytest.fixture()
def traj_file(tmp_path):
    path = tmp_path / "t.jsonl"
    good = render(["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yyyy"]), "\ndone"])
    with open(path, "w") as fh:
        fh.write(
            json.dumps({"prompt": "Q\n", "response": good, "problem": "p", "correct": True}) + "\n"
        )
        fh.write(json.dumps({"prompt": "Q\n", "response": good.replace("<Outline>2:", "<Outline>5:"),
                             "problem": "p", "correct": False}) + "\n")  # fmt: skip
    base = tmp_path / "b.jsonl"
    base.write_text(
        json.dumps({"prompt": "Q\n", "response": "z" * 100, "problem": "p", "correct": True}) + "\n"
    )
    return path, base


def test_validate_json(traj_file, capsys):
    assert main(["threads", "validate", str(traj_file[0]), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["valid"] == 1 and out["total"] == 2
    assert out["trajectories"][1]["errors"][0]["code"] == "numbering-gap"


def test_stats_with_baseline(traj_file, capsys):
    assert (
        main(["threads", "stats", str(traj_file[0]), "--baseline", str(traj_file[1]), "--json"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["trajectories"] == 2 and out["activation_ratio"] == 1.0
    assert out["self_parallelism"] > 1.0
    assert out["speedup"]["speedup"] == pytest.approx(100 / out["mean_critical_path"])


def test_view(traj_file, tmp_path):
    out = tmp_path / "v.html"
    assert main(["threads", "view", str(traj_file[0]), "--out", str(out)]) == 0
    assert "thread critical" in out.read_text()


def test_pack(traj_file, capsys, monkeypatch):
    assert main(["threads", "pack", str(traj_file[0]), "--row-length", "512", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["units"] == 10 and out["rows"] == 1 and out["dropped_units"] == 0
    monkeypatch.setitem(sys.modules, "plait.threads.training.packing", None)  # packing unavailable
    assert main(["threads", "pack", str(traj_file[0])]) == 2
    assert "plait.threads.training.packing" in capsys.readouterr().err


def test_run_against_stub(char_fmt, stub_server, tmp_path, capsys):
    f = char_fmt
    text = render(["go\n", BlockSpec(outlines=["a", "b"], threads=["x", "y"]), "\nend"])
    prompt = f.encode("Q\n")
    target = prompt + f.encode(text)

    def script(ctx, body):
        if body["stop_token_ids"] == [f.tags.thread_end]:
            return f.encode(f" {'xy'[int(f.decode(ctx[-2:-1])) - 1]}\n</Thread>")
        return target[len(ctx) :] + [264]

    server = stub_server(vllm_like(f, script))
    out = tmp_path / "runs.jsonl"
    assert (
        main(
            [
                "threads",
                "run",
                "--base-url",
                server.url,
                "--prompt",
                "Q\n",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["runs"][0]["blocks"] == 1 and summary["runs"][0]["calls"] == 4
    rec = json.loads(out.read_text())
    assert rec["tokens"] == target + [264]
    assert main(["threads", "validate", str(out)]) == 0


def test_bad_tokenizer(traj_file, capsys):
    assert main(["threads", "stats", str(traj_file[0]), "--tokenizer", "/no/such/dir"]) == 2
    assert "existing local path" in capsys.readouterr().err
