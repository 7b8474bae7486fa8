"""`plait threads ...` end to end on small files (in-process, char tokenizer)."""

from __future__ import annotations

import json
import sys

import pytest

from plait.cli import main
from plait.threads.format.render import BlockSpec, render
from tests.helpers.threads import Raw, vllm_like


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


def test_pack(traj_file, tmp_path, capsys, monkeypatch):
    valid = tmp_path / "valid.jsonl"
    valid.write_text(traj_file[0].read_text().splitlines()[0] + "\n")
    rows = tmp_path / "rows.pt"
    args = ["threads", "pack", str(valid), "--row-length", "512", "--json", "--out", str(rows)]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["units"] == 5 and out["rows"] == 1 and out["dropped_units"] == 0
    import torch

    (row,) = torch.load(rows, weights_only=False)
    assert row.used == out["packed_tokens"] and row.length == 512
    # an invalid trajectory is not packed: the error names it and the way out
    assert main(["threads", "pack", str(traj_file[0])]) == 2
    err = capsys.readouterr().err
    assert "trajectory #1 is not valid" in err and "normalize" in err
    monkeypatch.setitem(sys.modules, "plait.threads.training.packing", None)  # packing unavailable
    assert main(["threads", "pack", str(valid)]) == 2
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
    # the server's log-probs per sampled token; null for inserted ones and the EOS vLLM hides
    lps, ins = rec["logprobs"], rec["inserted"]
    assert len(lps) == len(ins) and lps[-1] is None
    assert all((x is None) == i for x, i in zip(lps[:-1], ins[:-1]))
    assert {x for x in lps if x is not None} == {-0.5}
    assert main(["threads", "validate", str(out)]) == 0


def test_bad_tokenizer(traj_file, capsys):
    assert main(["threads", "stats", str(traj_file[0]), "--tokenizer", "/no/such/dir"]) == 2
    assert "existing local directory" in capsys.readouterr().err


def test_run_appends_resumes_and_refuses_other_settings(char_fmt, stub_server, tmp_path, capsys):
    f = char_fmt
    fail_on = {"P3"}  # the server breaks on this prompt (a crash mid-run)

    def handler(path, body):
        ctx = f.decode(body["prompt"])
        if any(ctx.startswith(p) for p in fail_on):
            return Raw(500, "text/plain", b"boom")
        toks = f.encode(f" answer to {ctx.strip()}") + [264]
        return vllm_like(f, lambda c, b: toks)(path, body)

    server = stub_server(handler)
    out = tmp_path / "runs.jsonl"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("P1\nP2\nP3\nP4\n")
    base = [
        "threads",
        "run",
        "--base-url",
        server.url,
        "--prompts",
        str(prompts),
        "--out",
        str(out),
    ]
    assert main(base) == 2  # P3 fails after P1 and P2 finished: both are kept
    assert "HTTP 500" in capsys.readouterr().err
    assert [r["prompt"] for r in map(json.loads, out.read_text().splitlines())] == ["P1", "P2"]
    fail_on.clear()
    n_calls = len(server.calls)
    assert main(base + ["--json"]) == 0  # rerun: resumes, P1 and P2 are not asked again
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped"] == 2 and [r["index"] for r in summary["runs"]] == [2, 3]
    assert len(server.calls) - n_calls == 2
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["prompt"] for r in recs] == ["P1", "P2", "P3", "P4"]
    assert f.decode(recs[3]["tokens"]) == "P4 answer to P4<|eos|>"
    # other settings: refused (the file is left as it is) unless --overwrite
    assert main(base + ["--max-total-tokens", "99"]) == 2
    assert "other settings (max_total_tokens)" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 4
    assert main(base + ["--max-total-tokens", "99", "--overwrite"]) == 0
    assert len(out.read_text().splitlines()) == 4 and len(server.calls) - n_calls == 6
    # a file from elsewhere, without a manifest, is not appended to silently
    other = tmp_path / "other.jsonl"
    other.write_text(out.read_text())
    assert main(base[:-1] + [str(other)]) == 2
    assert "no manifest" in capsys.readouterr().err


def test_validate_lenient_and_normalize(tmp_path, capsys, char_fmt):
    good = render(["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\ndone"])
    wild = good.replace("</Thread><Thread>", "</Thread>\n<Thread>").replace("1: x", "1:x")
    src = tmp_path / "wild.jsonl"
    src.write_text(
        json.dumps({"prompt": "Q\n", "response": wild, "problem": "p", "correct": True}) + "\n"
        + json.dumps({"tokens": char_fmt.encode("Q\n" + good), "prompt_len": 2}) + "\n"
    )  # fmt: skip
    assert main(["threads", "validate", str(src)]) == 1  # strict
    capsys.readouterr()
    assert main(["threads", "validate", str(src), "--lenient", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lenient"] and report["valid"] == 2
    assert sorted(x["code"] for x in report["trajectories"][0]["fixes"]) == [
        "glue",
        "thread-format",
    ]
    assert report["trajectories"][1]["fixes"] == []
    out = tmp_path / "canon.jsonl"
    assert main(["threads", "normalize", str(src), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["changed"] == 1 and summary["fixes"] == {"glue": 1, "thread-format": 1}
    first, second = (json.loads(x) for x in out.read_text().splitlines())
    assert first == {"prompt": "Q\n", "response": good, "problem": "p", "correct": True}
    assert second["tokens"] == char_fmt.encode("Q\n" + good)  # token form stays token form
    assert main(["threads", "validate", str(out)]) == 0  # strict accepts the normalised file


def test_stats_names_its_parallel_ratio_convention(traj_file, capsys):
    ratios = {}
    for conv in ("block", "inside"):
        assert (
            main(["threads", "stats", str(traj_file[0]), "--parallel-ratio", conv, "--json"]) == 0
        )
        out = json.loads(capsys.readouterr().out)
        assert out["parallel_ratio_convention"] == conv
        ratios[conv] = out["mean_parallel_ratio"]
    total = out["mean_total_tokens"]  # both trajectories have one closed block and equal length
    assert ratios["block"] - ratios["inside"] == pytest.approx(2 / total)


def test_unicode_line_breaks_round_trip_and_resume_keeps_whole_records(
    char_fmt, stub_server, tmp_path, capsys
):
    """issue 22: a prompt holding U+2028 is written escaped and read back by every command; a
    last record that lost only its newline is kept on resume (not asked again, not cut)."""
    f = char_fmt

    def handler(path, body):
        toks = f.encode(" fine\u2029done") + [264]
        return vllm_like(f, lambda c, b: toks)(path, body)

    server = stub_server(handler)
    out = tmp_path / "runs.jsonl"
    base = ["threads", "run", "--base-url", server.url, "--out", str(out),
            "--prompt", "Q\u2028one", "--prompt", "Q\u0085two"]  # fmt: skip
    assert main(base) == 0
    raw = out.read_text(encoding="utf-8")
    assert "\u2028" not in raw and "\\u2028" in raw and len(raw.splitlines()) == 2
    assert [json.loads(x)["prompt"] for x in raw.splitlines()] == ["Q\u2028one", "Q\u0085two"]
    assert main(["threads", "stats", str(out)]) == 0
    assert main(["threads", "normalize", str(out), "--out", str(tmp_path / "n.jsonl")]) == 0
    assert main(["threads", "validate", str(tmp_path / "n.jsonl")]) == 0
    norm = (tmp_path / "n.jsonl").read_text(encoding="utf-8")
    assert "\u2029" not in norm and len(norm.splitlines()) == 2
    out.write_text(raw.removesuffix("\n"), encoding="utf-8")  # killed before the last newline
    calls = len(server.calls)
    capsys.readouterr()
    assert main(base + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 2 and len(server.calls) == calls
    assert out.read_text(encoding="utf-8").removesuffix("\n") == raw.removesuffix("\n")


def test_pack_to_a_path_without_suffix(traj_file, tmp_path, capsys):
    import torch

    good = tmp_path / "good.jsonl"
    good.write_text(traj_file[0].read_text().splitlines()[0] + "\n")
    assert main(["threads", "pack", str(good), "--out", str(tmp_path / "rowsfile")]) == 0
    assert isinstance(torch.load(tmp_path / "rowsfile", weights_only=False), list)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "b.jsonl",
        "good.jsonl",
        "rowsfile",
        "t.jsonl",
    ]
