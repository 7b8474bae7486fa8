"""`plait hogwild`, `plait demo` and `plait eval hogwild` through the real argument parser."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from plait.cli import build_parser, main
from tests.helpers.checkpoints import LoadStopped, stop_at_load
from tests.helpers.toy import ToyTokenizer, toy_model


@pytest.fixture
def fake_load(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = SimpleNamespace(model=toy_model("qwen3"), tokenizer=ToyTokenizer(), name="tiny-qwen3")
    monkeypatch.setattr("plait.runtime.loading.loader.load_model", lambda *a, **k: tiny)


def test_subcommands_are_registered() -> None:
    p = build_parser()
    args = p.parse_args(
        ["hogwild", "2+2?", "--workers", "3", "--budgets", "64", "128", "--layout", "interleaved"]
    )
    assert args.workers == 3 and args.budgets == [64, 128] and args.layout == "interleaved"
    assert p.parse_args(["demo"]).model == "qwen2.5-0.5b"
    e = p.parse_args(
        ["eval", "hogwild", "--dataset", "aime2025", "--methods", "sequential", "hogwild-4"]
    )
    assert e.methods == ["sequential", "hogwild-4"] and e.budgets == [256, 512, 1024]


def test_hogwild_command_writes_a_json_transcript(fake_load: None, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "t.json"
    rc = main(
        [
            "hogwild",
            "What is 2 + 2?",
            "--workers",
            "3",
            "--budgets",
            "6",
            "12",
            "--no-live",
            "--finisher-tokens",
            "2",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["workers"] == ["Alice", "Bob", "Carol"] and [
        s["budget"] for s in data["snapshots"]
    ] == [6, 12]
    assert data["config"]["workers"] == 3 and data["tokens"] > 0
    assert "answer:" in capsys.readouterr().out


def test_demo_runs(fake_load: None, capsys) -> None:  # noqa: ANN001
    assert main(["demo", "--budgets", "5", "--no-live", "--finisher-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert "robe" in out and "Hogwild W=2" in out and "sequential" in out  # side by side


def test_many_workers_get_generated_or_given_names(fake_load: None, tmp_path: Path) -> None:
    out = tmp_path / "t.json"
    argv = ["hogwild", "2+2?", "--budgets", "2", "--no-live", "--finisher-tokens", "1"]
    assert main([*argv, "--workers", "10", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["workers"][-2:] == ["Worker9", "Worker10"]
    assert main([*argv, "--workers", "3", "--names", "X", "Y", "Z", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["workers"] == ["X", "Y", "Z"]


def test_live_columns_layout() -> None:
    from plait.hogwild.live import columns

    rows = columns(["hello world " * 5, "short"], ["Alice", "Bob"], width=40, height=3)
    assert rows[0].startswith("Alice") and "Bob" in rows[0]
    assert all(len(r) <= 40 for r in rows)


@pytest.mark.model
def test_demo_on_the_bundled_model(capsys) -> None:  # noqa: ANN001
    """The README's main job, shortened: two workers of Qwen2.5-0.5B for a few passes."""
    pytest.importorskip("plait.runtime.loading.loader")
    assert main(["demo", "--budgets", "12", "--no-live"]) == 0
    out = capsys.readouterr().out
    assert "**Alice [1]:**" in out or "answer:" in out


@pytest.mark.parametrize("argv", [["hogwild"], ["demo"], ["eval", "hogwild"]])
def test_help_shows_defaults_and_examples(argv: list[str], capsys) -> None:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and "examples:" in out and "(default: " in out


@pytest.mark.parametrize("given,loaded", [("auto", "auto"), ("gguf", "gguf"), ("fp32", "fp32")])
def test_eval_dtype_is_the_same_whatever_the_batch(monkeypatch, tmp_path: Path, given, loaded):  # noqa: ANN001
    seen = stop_at_load(monkeypatch)
    data = tmp_path / "q.jsonl"
    data.write_text('{"question": "1+1?", "answer": "2"}\n')
    for batch in ("1", "16"):
        with pytest.raises(LoadStopped):
            main(["eval", "hogwild", "--dataset", str(data), "--methods", "sequential",
                  "--budgets", "8", "--batch", batch, "--dtype", given, "--out",
                  str(tmp_path / f"o{batch}"), "--no-progress"])  # fmt: skip
    assert seen == [loaded, loaded]
