"""CLI: `plait sgc simulate | search | train | bench` produce JSON (with the decode check), and a
table of bad inputs: exit 2, one `error:` line, no traceback, no output file left behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from plait.cli import main
from plait.sgc.traces import Trace


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_simulate_json_plot_trace_and_log(capsys, tmp_path) -> None:
    argv = ["sgc", "simulate", "--n", "16", "--jobs", "20", "--lam", "3", "--json"]
    assert (
        main(argv + ["--plot", str(tmp_path / "j.png"), "--save-trace", str(tmp_path / "t")]) == 0
    )
    out = _json(capsys)
    assert set(out) == {"m-sgc(B=1,W=2,lam=3)/paper", "m-sgc(B=1,W=2,lam=3)/plait"}
    chk = out["m-sgc(B=1,W=2,lam=3)/plait"]["decode_check"]
    assert chk["jobs"] == 20 and chk["failed"] == 0 and chk["worst_rel_error"] <= 1e-9
    assert (tmp_path / "j.png").exists() and Trace.load(tmp_path / "t").n == 16  # no suffix added
    log = tmp_path / "log.jsonl"
    argv = ["sgc", "simulate", "--jobs", "20", "--scheme", "gc", "--s", "3", "--json",
            "--trace", str(tmp_path / "t"), "--log", str(log), "--no-verify-decode"]  # fmt: skip
    assert main(argv) == 0
    out = _json(capsys)
    assert out["gc(s=3)/plait"]["decode_check"] is None  # n = 16 came from the trace file
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    assert {"round", "arrivals", "t_cut", "close", "stragglers", "wait_out", "wait_reason",
            "reattempts", "samples", "decode_s"} <= set(recs[0])  # fmt: skip
    assert recs[-1]["code"]["kind"] == "frc"
    assert main(argv) == 0  # a rerun writes a fresh log, not an appended one
    assert len(log.read_text().splitlines()) == len(recs)


def test_outputs_follow_links_and_keep_what_is_there(capsys, tmp_path) -> None:
    """--log through a symlink writes the link's target and keeps the link; an existing log is
    emptied in place (same inode), never unlinked; --save-trace through a link keeps it too."""
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "log.jsonl").write_text("old\n")
    inode = (tmp_path / "real" / "log.jsonl").stat().st_ino
    (tmp_path / "log.jsonl").symlink_to(tmp_path / "real" / "log.jsonl")
    (tmp_path / "t.npz").symlink_to(tmp_path / "real" / "t.npz")  # dangling: created through it
    argv = ["sgc", "simulate", "--n", "16", "--jobs", "8", "--lam", "3", "--json",
            "--log", str(tmp_path / "log.jsonl"), "--save-trace", str(tmp_path / "t.npz")]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert (tmp_path / "log.jsonl").is_symlink() and (tmp_path / "t.npz").is_symlink()
    assert (tmp_path / "real" / "log.jsonl").stat().st_ino == inode
    assert json.loads((tmp_path / "real" / "log.jsonl").read_text().split("\n")[0])["round"] >= 0
    assert Trace.load(tmp_path / "real" / "t.npz").n == 16


def test_search_train_and_bench(capsys, tmp_path) -> None:
    argv = ["sgc", "search", "--n", "8", "--jobs", "30", "--probe", "12", "--max-delay", "2",
            "--json", "--oracle", "--plot", str(tmp_path / "l.png")]  # fmt: skip
    assert main(argv) == 0
    out = _json(capsys)
    assert out["probe_then_switch"]["total"] > 0 and "oracle_best" in out
    assert (tmp_path / "l.png").exists()
    assert main(["sgc", "bench", "--n", "32", "--jobs", "12", "--seeds", "2", "--json"]) == 0
    assert "gc(s=15)/paper" in _json(capsys)
    assert main(["sgc", "train", "--n", "6", "--jobs", "12", "--scheme", "gc", "--json"]) == 0
    assert _json(capsys)["equal_to_reference"] is True


def test_results_are_printed_before_the_plot(capsys, tmp_path, monkeypatch) -> None:
    import plait.sgc.plots as plots

    def broken(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "j.png"))

    monkeypatch.setattr(plots, "jobs_vs_time", broken)
    argv = ["sgc", "simulate", "--n", "16", "--jobs", "8", "--lam", "3", "--json",
            "--plot", str(tmp_path / "j.png")]  # fmt: skip
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert "m-sgc(B=1,W=2,lam=3)/plait" in json.loads(cap.out)
    assert (
        cap.err.strip()
        == f"plait sgc simulate: error: {tmp_path / 'j.png'}: No space left on device"
    )


def _files(tmp_path) -> dict:
    np.save(tmp_path / "arr.npy", np.ones((4, 4)))
    np.savez(tmp_path / "other.npz", x=np.ones(3))
    (tmp_path / "text.npz").write_text("not a zip")
    Trace(delays=np.ones((8, 40))).save(tmp_path / "t8.npz")
    Trace(delays=np.random.default_rng(0).random((8, 40))).save(tmp_path / "damaged.npz")
    data = bytearray((tmp_path / "damaged.npz").read_bytes())
    data[200:1200] = bytes(b ^ 0x55 for b in data[200:1200])  # inside the compressed member
    (tmp_path / "damaged.npz").write_bytes(bytes(data))
    os.mkfifo(tmp_path / "fifo")
    names = ("arr.npy", "other.npz", "text.npz", "t8.npz", "damaged.npz", "fifo", "nodir/x")
    return {k: str(tmp_path / k) for k in names}


SIM = ["sgc", "simulate", "--n", "16", "--jobs", "8", "--lam", "3"]
BAD = [  # (argv with {file} placeholders, a word the message must contain)
    (["sgc", "simulate", "--trace", "bogus"], "'ge', 'iid'"),
    (["sgc", "simulate", "--trace", "{arr.npy}"], "bare array"),
    (["sgc", "simulate", "--trace", "{other.npz}"], "no 'delays'"),
    (["sgc", "simulate", "--trace", "{text.npz}"], "not a .npz"),
    (
        ["sgc", "simulate", "--trace", "{t8.npz}", "--n", "16", "--scheme", "gc", "--s", "1"],
        "--n 8",
    ),
    (
        ["sgc", "simulate", "--trace", "{t8.npz}", "--jobs", "100", "--scheme", "gc", "--s", "1"],
        "lower --jobs",
    ),
    (SIM + ["--plot", "{nodir/x}.png"], "does not exist"),
    (SIM + ["--log", "{nodir/x}.jsonl"], "does not exist"),
    (SIM + ["--save-trace", "{nodir/x}.npz"], "does not exist"),
    (SIM + ["--plot", "."], "is a directory"),
    (["sgc", "simulate", "--n", "0"], "--n must be >= 1"),
    (["sgc", "simulate", "--n", "-5"], "--n must be >= 1"),
    (SIM + ["--jobs", "0"], "--jobs must be >= 1"),
    (SIM + ["--mu", "-1"], "--mu must be >= 0"),
    (SIM + ["--c1", "-2"], "--c1 must be >= 0"),
    (SIM + ["--seed", "-1"], "--seed must be >= 0"),
    (SIM + ["--rules", "bogus"], "unknown rules"),
    (SIM + ["--rules", "paper,"], "comma list"),
    (["sgc", "simulate", "--n", "8"], "lambda < n"),
    (SIM + ["--scheme", "gc", "--s", "16"], "s < n"),
    (SIM + ["--scheme", "gc", "--s", "-1"], "s < n"),
    (SIM + ["--scheme", "sr-sgc", "--B", "2", "--W", "4"], "divide W - 1"),
    (SIM + ["--scheme", "sr-sgc", "--B", "0", "--W", "2"], "1 <= B < W"),
    (SIM + ["--scheme", "m-sgc", "--B", "3", "--W", "3"], "1 <= B < W"),
    (SIM + ["--lam", "-1"], "lambda"),
    (["sgc", "bench", "--seeds", "0"], "--seeds must be >= 1"),
    (["sgc", "bench", "--n", "16"], "--n must be >= 28"),
    (["sgc", "bench", "--jobs", "0"], "--jobs must be >= 1"),
    (["sgc", "bench", "--plot", "{nodir/x}.png"], "does not exist"),
    (["sgc", "search", "--n", "16", "--jobs", "30", "--probe", "3"], "probe must be"),
    (["sgc", "search", "--n", "16", "--jobs", "10", "--probe", "12"], "shorter than the run"),
    (["sgc", "search", "--max-delay", "0"], "--max-delay must be >= 1"),
    (["sgc", "search", "--rules", "nope"], "unknown rules"),
    (["sgc", "search", "--trace", "{t8.npz}", "--n", "9"], "--n 8"),
    (["sgc", "search", "--plot", "{nodir/x}.png"], "does not exist"),
    (["sgc", "train", "--models", "0"], "--models must be >= 1"),
    (["sgc", "train", "--models", "1", "--scheme", "m-sgc"], "models"),
    (["sgc", "train", "--unit", "0"], "--unit must be >= 1"),
    (["sgc", "train", "--scale", "0"], "--scale"),
    (["sgc", "train", "--cpus-per-actor", "-1"], "--cpus-per-actor"),
    (["sgc", "train", "--lr-min", "0"], "lr_min"),
    (["sgc", "train", "--n", "4", "--lam", "5"], "lambda < n"),
    (["sgc", "train", "--plot", "{nodir/x}.png"], "does not exist"),
    # issue 22: inputs, special files and huge values
    (["sgc", "simulate", "--trace", "{damaged.npz}"], "damaged member"),
    (["sgc", "simulate", "--trace", "{t8.npz}", "--log", "{t8.npz}"], "same file as --trace"),
    (["sgc", "simulate", "--trace", "{t8.npz}", "--save-trace", "{t8.npz}"], "same file"),
    (SIM + ["--save-trace", "x.npz", "--log", "x.npz"], "same file as --log"),
    (SIM + ["--plot", "x.png", "--log", "x.png"], "same file as --plot"),
    (SIM + ["--log", "{fifo}"], "special file"),
    (SIM + ["--save-trace", "{fifo}"], "special file"),
    (SIM + ["--c0", "inf"], "--c0 must be a finite number"),
    (SIM + ["--c1", "nan"], "--c1 must be >= 0"),
    (SIM + ["--mu", "inf"], "--mu must be a finite number"),
    (["sgc", "simulate", "--n", "100000000"], "--n must be <= 4096"),
    (SIM + ["--jobs", "1000000000"], "--jobs must be <= 1000000"),
    (["sgc", "search", "--n", "4096", "--jobs", "900000"], "cells"),
    (["sgc", "bench", "--n", "4096", "--jobs", "900000"], "cells"),
    (["sgc", "bench", "--seeds", "100000000"], "--seeds must be <= 1000"),
    (["sgc", "search", "--max-delay", "1000000"], "--max-delay must be <= 16"),
    (["sgc", "train", "--models", "1000000000"], "--models must be <= 1024"),
    (["sgc", "train", "--unit", "1000000000"], "--unit must be <= 4096"),
    (["sgc", "train", "--n", "4096", "--jobs", "900000"], "cells"),
    (["sgc", "train", "--lr-max", "inf"], "--lr-max must be a finite number"),
    (["sgc", "train", "--scale", "inf"], "--scale"),
]


@pytest.mark.parametrize(
    "argv,word", BAD, ids=[" ".join(a[1:4]) + f" {i}" for i, (a, _) in enumerate(BAD)]
)
def test_bad_input_table(argv, word, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    files = _files(tmp_path)
    for k, v in files.items():
        argv = [a.replace("{" + k + "}", v) for a in argv]
    before = {p.name for p in tmp_path.rglob("*")}
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = [x for x in cap.err.splitlines() if x.strip()]
    errs = [x for x in lines if "error:" in x]
    assert len(errs) == 1 and errs[0].startswith(f"plait sgc {argv[1]}: error: "), cap.err
    assert word in errs[0] and "Traceback" not in cap.err
    assert {p.name for p in tmp_path.rglob("*")} == before  # no partial output left
    assert os.path.getsize(files["t8.npz"]) > 0 and stat.S_ISFIFO(os.stat(files["fifo"]).st_mode)


def test_a_real_process_prints_one_line(tmp_path) -> None:
    cmd = [sys.executable, "-m", "plait.cli", "sgc", "simulate", "--trace", "bogus"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().splitlines() == [
        "plait sgc simulate: error: trace 'bogus' is not 'ge', 'iid' or an existing .npz trace file"
    ]


@pytest.mark.parametrize("sub", ["simulate", "search", "train", "bench"])
def test_help_shows_defaults_and_examples(sub, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["sgc", sub, "--help"])
    out = capsys.readouterr().out
    assert "(default:" in out and "examples:" in out and f"plait sgc {sub}" in out


@pytest.mark.parametrize(
    ("module", "argv", "extra"),
    [
        ("matplotlib", ["sgc", "simulate", "--n", "16", "--jobs", "8", "--lam", "3", "--plot", "j.png"], "ml"),
        ("ray", ["sgc", "train", "--backend", "ray"], "ray"),
        ("sklearn", ["sgc", "train"], "ml"),
    ],
)  # fmt: skip
def test_a_missing_extra_is_one_line_before_the_work(
    module, argv, extra, capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # as if installed without the extra
    assert main(argv) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and "Traceback" not in cap.err
    assert f"needs the package {module}" in cap.err and f"'.[{extra}]'" in cap.err
    assert list(tmp_path.iterdir()) == []


def test_json_output_is_strict_json(capsys, monkeypatch) -> None:
    """A non-finite result is null in --json (with a warning), never `Infinity`."""
    import plait.sgc.bench as bench

    real = bench.run_arm

    def infinite(*a, **k):
        r = real(*a, **k)
        return {**r, "runtime": float("inf")}

    monkeypatch.setattr(bench, "run_arm", infinite)
    argv = [
        "sgc",
        "simulate",
        "--n",
        "16",
        "--jobs",
        "8",
        "--lam",
        "3",
        "--json",
        "--rules",
        "plait",
    ]
    assert main(argv) == 0
    cap = capsys.readouterr()
    assert "Infinity" not in cap.out and "not finite" in cap.err
    assert json.loads(cap.out)["m-sgc(B=1,W=2,lam=3)/plait"]["runtime"] is None
