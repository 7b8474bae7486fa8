"""House rules the reviewers check by eye, checked here on the source: every module of `plait/`
has a docstring, none is over 300 lines, and no function is over 80 lines; one name per concept
(no class name defined twice, no module names of one package that differ only by a suffix)."""

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


def class_definitions(files: list[Path]) -> dict[str, list[str]]:
    """Class name -> where it is defined (`path:line`), nested classes included."""
    where: dict[str, list[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                where.setdefault(node.name, []).append(
                    f"{path.parent.name}/{path.name}:{node.lineno}"
                )
    return where


def test_class_name_check_finds_a_twin(tmp_path: Path) -> None:
    for i in (1, 2):
        (tmp_path / f"m{i}.py").write_text("class Block:\n    pass\n")
    assert len(class_definitions(sorted(tmp_path.glob("*.py")))["Block"]) == 2


def test_no_class_name_defined_twice() -> None:
    """One name per concept: a class name means one thing everywhere in plait."""
    twice = {n: w for n, w in class_definitions(_modules()).items() if len(w) > 1}
    assert not twice, f"class names defined more than once (rename one): {twice}"


def _stem(name: str) -> str:
    return name.split("_")[0].removesuffix("s").removesuffix("ing").removesuffix("er")


def suffix_twins(names: list[str]) -> list[tuple[str, str]]:
    """Module names of one package where one is the other plus a suffix (`answers` /
    `answering`, `prompts` / `prompt_texts`): one concept in two modules."""
    names = [n for n in names if n not in ("__init__", "cli")]
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]
            if _stem(a) == _stem(b) and len(_stem(a)) > 2]  # fmt: skip


def test_suffix_twin_check_finds_them() -> None:
    assert suffix_twins(["answers", "answering", "run"]) == [("answers", "answering")]
    assert suffix_twins(["prompts", "prompt_texts"]) == [("prompts", "prompt_texts")]
    assert suffix_twins(["loader", "loading", "segments"]) == [("loader", "loading")]
    assert not suffix_twins(["plan", "partials", "per_read", "registry"])


def test_no_module_names_differing_only_by_a_suffix() -> None:
    """Within a package (its modules and sub-packages): no `answers` next to `answering`."""
    bad = []
    for pkg in sorted({p.parent for p in _modules()}):
        names = sorted({p.stem for p in pkg.glob("*.py")} | {d.name for d in pkg.iterdir()
                        if (d / "__init__.py").exists()})  # fmt: skip
        bad += [f"{pkg.relative_to(PLAIT.parent)}: {a} / {b}" for a, b in suffix_twins(names)]
    assert not bad, f"one concept, one module: {bad}"
