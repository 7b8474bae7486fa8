"""Bad inputs to `plait hogwild`, `plait demo` and `plait eval hogwild`: exit 2, one `error:` line
naming the problem, no traceback, nothing half-written, and no model loaded for input that can be
checked before (the loader is a trap that fails the test)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from plait.cli import main
from tests.helpers.toy import ToyTokenizer, toy_model


def _table(tmp: Path) -> list[tuple[list[str], str, bool]]:
    """(argv, what the error line says, whether the model may load first)."""
    (tmp / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp / "blank.txt").write_text(" \n")
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "fields.jsonl").write_text('{"q": "1+1?", "a": "2"}\n')
    (tmp / "array.jsonl").write_text("[1, 2]\n")
    (tmp / "bad.jsonl").write_bytes(b'{"question": "caf\xe9", "answer": "1"}\n')
    h = ["hogwild", "2+2?", "--no-live"]
    e = ["eval", "hogwild", "--no-progress", "--out", str(tmp / "eval")]
    return [
        ([*h, "--workers", "0"], "workers must be an integer >= 1", False),
        ([*h, "--workers", "two"], "invalid int value: 'two'", False),
        ([*h, "--budgets", "0"], "each budget must be an integer >= 1, got 0", False),
        ([*h, "--layout", "bogus"], "unknown layout 'bogus'", False),
        ([*h, "--prompt", "answer_is"], "unknown Hogwild prompt 'answer_is'", False),
        ([*h, "--preset", "huge"], "unknown preset 'huge'", False),
        ([*h, "--loop-guard", "maybe"], "invalid choice: 'maybe'", False),
        ([*h, "--temperature", "-1"], "--temperature must be >= 0", False),
        ([*h, "--interjection-every", "-5"], "interjection_every must be >= 0", False),
        ([*h, "--names", "A"], "2 workers need 2 names", False),
        ([*h, "--names", "A", "A"], "names must be distinct", False),
        ([*h, "--json", str(tmp / "nodir" / "run.json")], "does not exist", False),
        ([*h, "--json", str(tmp)], "is a directory", False),
        (["hogwild", "--no-live"], "no problem given", False),
        (["hogwild", "  ", "--no-live"], "no problem given", False),
        (["hogwild", "x", "--file", str(tmp / "blank.txt")], "not both", False),
        (["hogwild", "--file", str(tmp / "blank.txt")], "blank.txt is empty", False),
        (["hogwild", "--file", str(tmp / "missing.txt")], "missing.txt: no such file", False),
        (["hogwild", "--file", str(tmp / "latin1.txt")], "latin1.txt is not UTF-8 text", False),
        (["hogwild", "--file", str(tmp)], f"--file {tmp} is a directory", False),
        (["demo", "--workers", "9"], "between 1 and 8", False),
        (["demo", "--budgets", "-3"], "each budget must be an integer >= 1", False),
        ([*e, "--dataset", "bogus"], "unknown dataset 'bogus'", False),
        ([*e, "--limit", "0"], "limit must be >= 1, got 0", False),
        ([*e, "--offset", "-1"], "offset must be >= 0", False),
        ([*e, "--offset", "100000"], "has no problems at offset 100000", False),
        ([*e, "--dataset", str(tmp / "empty.jsonl")], "has no problems: give a file", False),
        ([*e, "--dataset", str(tmp / "fields.jsonl")], "lacks 'question' or 'answer'", False),
        ([*e, "--dataset", str(tmp / "array.jsonl")], "is a JSON list; one object per line", False),
        ([*e, "--dataset", str(tmp / "bad.jsonl")], "bad.jsonl is not UTF-8 text", False),
        ([*e, "--methods", "hogwild-x"], "unknown method 'hogwild-x'", False),
        ([*e, "--budgets", "0"], "each budget must be an integer >= 1", False),
        ([*e, "--layout", "ring"], "unknown layout 'ring'", False),
        ([*e, "--sequential-prompt", "roles"], "unknown sequential prompt 'roles'", False),
        ([*e, "--batch", "0"], "--batch must be >= 1", False),
        (["eval", "hogwild", "--out", str(tmp / "no" / "dir")], "does not exist", False),
    ]


@pytest.fixture
def trap(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """load_model returns a toy model and records each load."""
    loads: list[str] = []
    tiny = SimpleNamespace(model=toy_model("qwen2"), tokenizer=ToyTokenizer(), name="toy")

    def load(name: str, **kw):  # noqa: ANN003, ANN202
        loads.append(name)
        return tiny

    monkeypatch.setattr("plait.runtime.loading.loader.load_model", load)
    return loads


def _one_error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2, (argv, err)
    assert len(errors) == 1 and re.match(r"plait [\w ]+: error: ", errors[0]), (argv, err)
    assert "Traceback" not in err, (argv, err)
    return errors[0]


def test_bad_inputs_get_one_error_line(tmp_path: Path, trap: list[str], capsys) -> None:  # noqa: ANN001
    for argv, says, may_load in _table(tmp_path):
        trap.clear()
        line = _one_error(argv, capsys)
        assert says in line, (argv, line)
        assert may_load or not trap, (argv, "the model was loaded before the input was checked")
    assert not (tmp_path / "eval").exists() and not (tmp_path / "nodir").exists()


def test_eval_rerun_with_other_settings_is_refused(tmp_path: Path, trap: list[str], capsys) -> None:  # noqa: ANN001
    (tmp_path / "p.jsonl").write_text('{"question": "1+1?", "answer": "2"}\n')
    argv = ["eval", "hogwild", "--dataset", str(tmp_path / "p.jsonl"), "--no-progress",
            "--out", str(tmp_path / "o"), "--budgets", "3", "--finisher-tokens", "1",
            "--methods", "sequential", "hogwild-2"]  # fmt: skip
    assert main(argv) == 0
    records = (tmp_path / "o" / "records.jsonl").read_text()
    line = _one_error([*argv, "--budgets", "4"], capsys)
    assert "other settings (budgets)" in line and "--overwrite" in line
    assert (tmp_path / "o" / "records.jsonl").read_text() == records  # untouched
    assert main([*argv, "--layout", "interleaved", "--overwrite"]) == 0
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert manifest["hogwild"]["layout"] == "interleaved" and manifest["dataset_sha256"]
