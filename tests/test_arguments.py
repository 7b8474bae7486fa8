"""The shared CLI pieces: `HelpFormatter` and `read_text_input`."""

from __future__ import annotations

import argparse
import io
import re
import sys
from types import SimpleNamespace

import pytest

from plait.arguments import HelpFormatter, read_text_input
from plait.errors import UsageError


def test_help_shows_real_defaults_and_keeps_the_epilog() -> None:
    p = argparse.ArgumentParser(
        prog="x", formatter_class=HelpFormatter, epilog="examples:\n  x --n 3\n  x --flag"
    )
    p.add_argument("--n", type=int, default=0, help="a count")
    p.add_argument("--name", default="bob", help="a name")
    p.add_argument("--flag", action="store_true", help="a flag")
    p.add_argument("--unset", help="nothing by default")
    out = p.format_help()
    assert "a count (default: 0)" in out and "a name (default: bob)" in out
    assert "a flag\n" in out and "nothing by default\n" in out and "default: None" not in out
    assert "examples:\n  x --n 3\n  x --flag" in out


def test_reads_utf8_text(tmp_path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("café ≠ cafe\n", encoding="utf-8")
    assert read_text_input(str(f)) == "café ≠ cafe\n"


def test_dash_reads_standard_input(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO("½ + 2?".encode())))
    assert read_text_input("-") == "½ + 2?"
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(b" \n")))
    with pytest.raises(UsageError, match=r"^--file - \(standard input\) is empty; put the text"):
        read_text_input("-")


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("missing.txt", None, r"--prompts {}: no such file; check the path$"),
        ("adir", "dir", r"--prompts {} is a directory; give a text file$"),
        ("latin1.txt", "caf\xe9".encode("latin-1"), r"--prompts {} is not UTF-8 text \(byte 3: "),
        ("blank.txt", b" \n\t\n", r"--prompts {} is empty; put one prompt per line in it$"),
        ("empty.txt", b"", r"--prompts {} is empty"),
    ],
)
def test_bad_files_are_one_usage_error(tmp_path, name, content, says) -> None:
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(UsageError) as exc:
        read_text_input(str(path), "--prompts", "one prompt per line")
    msg = str(exc.value)
    assert "\n" not in msg
    assert re.search(says.format(re.escape(str(path))), msg), msg


def _leaf_parsers(parser: argparse.ArgumentParser, path: str):  # noqa: ANN202
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from _leaf_parsers(sub, f"{path} {name}")


def test_every_command_shows_its_defaults_and_examples() -> None:
    from plait.cli import build_parser

    leaves = dict(_leaf_parsers(build_parser(), "plait"))
    assert {"plait generate", "plait hogwild", "plait threads run", "plait sgc bench"} <= set(
        leaves
    )
    for path, parser in leaves.items():
        out = parser.format_help()
        assert parser.formatter_class is HelpFormatter, path
        assert "\nexamples:\n" in out and f"{path} " in out.split("examples:")[1], path
        assert "(default: None)" not in out and "(default: False)" not in out, path
