"""The CLI's one error boundary and the output-file helpers (plait/cli.py, plait/outputs.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from plait import cli
from plait.errors import OutputError, UsageError
from plait.outputs import JsonlAppender, Manifest, check_writable, read_jsonl


def _fake_command(monkeypatch, exc: BaseException) -> None:
    def register(sub):
        p = sub.add_parser("boom")
        p.add_argument("--x")

        def func(args):
            raise exc

        p.set_defaults(func=func)

    real = cli.build_parser

    def build():
        parser = real()
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        register(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


@pytest.mark.parametrize(
    "exc",
    [UsageError("bad --x"), ValueError("bad value"), FileNotFoundError(2, "No such file", "f.txt"),
     OutputError("no dir"), json.JSONDecodeError("Expecting value", "x", 0),
     UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")],
)  # fmt: skip
def test_user_errors_are_one_line_exit_2(monkeypatch, capsys, exc):
    _fake_command(monkeypatch, exc)
    assert cli.main(["boom", "--x", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plait boom: error: ")
    assert "Traceback" not in err


def test_debug_shows_traceback(monkeypatch, capsys):
    _fake_command(monkeypatch, ValueError("bad"))
    monkeypatch.setenv("PLAIT_DEBUG", "1")
    assert cli.main(["boom"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "plait boom: error: bad" in err


def test_bugs_keep_their_traceback(monkeypatch):
    _fake_command(monkeypatch, IndexError("bug"))
    with pytest.raises(IndexError):
        cli.main(["boom"])


def test_command_name_follows_subcommands():
    parser = cli.build_parser()
    assert cli.command_name(parser, ["threads", "validate", "x"]) == "plait threads validate"
    assert cli.command_name(parser, ["sgc", "--help"]) == "plait sgc"


def test_closed_pipe_exits_quietly():
    code = "import sys; sys.argv=['plait','boom']; from plait import cli\n" + (
        "import argparse\n"
        "def b():\n"
        "    p=argparse.ArgumentParser(prog='plait'); s=p.add_subparsers()\n"
        "    q=s.add_parser('boom')\n"
        "    def f(a):\n"
        "        for i in range(100000): print('line', i)\n"
        "    q.set_defaults(func=f); return p\n"
        "cli.build_parser=b\nraise SystemExit(cli.main(['boom']))\n"
    )
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | head -1', shell=True, capture_output=True, text=True
    )
    assert proc.stdout == "line 0\n"
    assert "Traceback" not in proc.stderr and "Broken" not in proc.stderr


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "a.json") == tmp_path / "a.json"
    with pytest.raises(OutputError, match="does not exist"):
        check_writable(tmp_path / "nodir" / "a.json", "--json")
    with pytest.raises(OutputError, match="is a directory"):
        check_writable(tmp_path, "--json")


def test_jsonl_torn_tail_is_skipped_and_cut(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert "torn last line" in capsys.readouterr().err
    with JsonlAppender(path) as out:
        out.write({"a": 3})
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(OutputError, match=":2:"):
        read_jsonl(path)


def test_manifest_refuses_other_settings(tmp_path):
    m = Manifest(tmp_path / "manifest.json", {"model": "a", "budgets": (1, 2)})
    assert m.check(overwrite=False) is False
    assert (
        Manifest(tmp_path / "manifest.json", {"model": "a", "budgets": [1, 2]}).check(False)
        is False
    )
    other = Manifest(tmp_path / "manifest.json", {"model": "b", "budgets": [1, 2]})
    with pytest.raises(OutputError, match="model"):
        other.check(overwrite=False)
    assert other.check(overwrite=True) is True
