"""CLI smoke: `plait sgc simulate | search | bench` produce JSON; bad input is a clean error."""

from __future__ import annotations

import json

from plait.cli import main


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_simulate_json_and_plot(capsys, tmp_path) -> None:
    assert (
        main(
            [
                "sgc",
                "simulate",
                "--n",
                "16",
                "--jobs",
                "20",
                "--lam",
                "3",
                "--json",
                "--plot",
                str(tmp_path / "j.png"),
                "--save-trace",
                str(tmp_path / "t.npz"),
            ]
        )
        == 0
    )
    out = _json(capsys)
    assert set(out) == {"m-sgc(B=1,W=2,lam=3)/paper", "m-sgc(B=1,W=2,lam=3)/plait"}
    assert (tmp_path / "j.png").exists()
    assert (
        main(
            [
                "sgc",
                "simulate",
                "--n",
                "16",
                "--jobs",
                "20",
                "--scheme",
                "gc",
                "--s",
                "3",
                "--json",
                "--trace",
                str(tmp_path / "t.npz"),
                "--log",
                str(tmp_path / "log.jsonl"),
            ]
        )
        == 0
    )
    assert "gc(s=3)/plait" in _json(capsys)
    recs = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {
        "round",
        "arrivals",
        "t_cut",
        "close",
        "stragglers",
        "wait_out",
        "reattempts",
        "samples",
        "decode_s",
    } <= set(recs[0])
    assert recs[-1]["code"]["kind"] == "frc"


def test_search_and_bench(capsys, tmp_path) -> None:
    assert (
        main(
            [
                "sgc",
                "search",
                "--n",
                "8",
                "--jobs",
                "30",
                "--probe",
                "12",
                "--max-delay",
                "2",
                "--json",
                "--oracle",
                "--plot",
                str(tmp_path / "l.png"),
            ]
        )
        == 0
    )
    out = _json(capsys)
    assert out["probe_then_switch"]["total"] > 0 and "oracle_best" in out
    assert main(["sgc", "bench", "--n", "32", "--jobs", "12", "--seeds", "2", "--json"]) == 0
    assert "gc(s=15)/paper" in _json(capsys)


def test_bad_input_is_a_clear_error(capsys) -> None:
    assert (
        main(
            [
                "sgc",
                "simulate",
                "--n",
                "16",
                "--jobs",
                "10",
                "--scheme",
                "sr-sgc",
                "--B",
                "2",
                "--W",
                "4",
            ]
        )
        == 2
    )
    assert "divide W - 1" in capsys.readouterr().err
    assert (
        main(["sgc", "simulate", "--n", "8", "--jobs", "10", "--scheme", "m-sgc"]) == 2
    )  # lam=27 >= n
    assert "lambda < n" in capsys.readouterr().err
