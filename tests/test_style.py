"""House rules the reviewers check by eye, checked here on the source: every module of `plait/`
has a docstring, none is over 300 lines, and no function is over 80 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PLAIT = Path(__file__).resolve().parents[1] / "plait"
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80


def _modules() -> list[Path]:
    return sorted(PLAIT.rglob("*.py"))


def long_functions(tree: ast.AST, limit: int) -> list[tuple[str, int]]:
    """(name, lines) of every function or method in `tree` longer than `limit` lines."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                out.append((node.name, lines))
    return out


def test_the_rules_see_plait() -> None:
    assert len(_modules()) > 100


def test_long_function_check_finds_one() -> None:
    tree = ast.parse("def f():\n    a = 1\n    b = 2\n    return a + b\n\ndef g():\n    pass\n")
    assert long_functions(tree, 3) == [("f", 4)]


def test_every_module_has_a_docstring() -> None:
    missing = [
        str(p.relative_to(PLAIT))
        for p in _modules()
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []


def test_no_module_over_300_lines() -> None:
    long = {
        str(p.relative_to(PLAIT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_over_80_lines() -> None:
    long = {
        f"{p.relative_to(PLAIT)}:{name}": n
        for p in _modules()
        for name, n in long_functions(ast.parse(p.read_text()), MAX_FUNCTION_LINES)
    }
    assert long == {}
