"""Architecture rules, checked on the source with `ast` (no imports executed, except where noted).

Floors, bottom to top: the base modules `plait.errors` / `plait.jsonl` / `plait.outputs` /
`plait.arguments`
(anyone may import them); `plait.runtime`; `plait.eval` (a leaf below the wings); the wings
`hogwild`, `threads`, `sgc`; the server floor `plait.serve` (may import wings; nothing below
imports it).

- plait.runtime imports no wing, eval or serve;
- wings import runtime/eval/base modules only, never each other or serve;
- eval imports no wing and no serve;
- the base modules import nothing else from plait;
- no import cycle among plait's top-level packages or its sub-packages, with relative imports
  resolved and function-level (lazy) imports counted (a sub-package may use modules of the
  package holding it), nor among its modules, function-level imports counted too: a lazy import
  may break a cycle only where a comment on its line says why (`# cycle: <reason>`, e.g. an
  optional heavy dependency);
- imports under `if TYPE_CHECKING:` never run: they count for the layer and torch rules only;
- `plait.threads.format` and the orchestrator (`plait.threads.inference` without the runtime
  backend) import no torch at any level, also through the plait modules they import;
- sgc's scheme logic imports no torch at module level; ray is imported only lazily (inside
  functions), and only by the SGC Ray backend and `plait serve --ray` (plait.serve.cluster).
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "plait"
WINGS = ("hogwild", "threads", "sgc")
BASE = ("plait.errors", "plait.jsonl", "plait.outputs", "plait.arguments")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path: Path) -> str:
    """The package a file's relative imports start from."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT.parent / rel.with_suffix(".py")).exists() or (
        ROOT.parent / rel / "__init__.py"
    ).exists()


CYCLE_MARK = "# cycle:"


def _import_nodes(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, str]]:
    """Every import statement with its kind: "eager" (runs when the module is imported), "lazy"
    (inside a function) or "typing" (under `if TYPE_CHECKING:`, never run)."""
    out: list[tuple[ast.Import | ast.ImportFrom, str]] = []

    def visit(node: ast.AST, kind: str) -> None:
        for child in ast.iter_child_nodes(node):
            sub = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                sub = "lazy" if kind == "eager" else kind
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.body:
                    visit_stmt(stmt, "typing")
                for stmt in child.orelse:
                    visit_stmt(stmt, kind)
                continue
            visit_stmt(child, sub)

    def visit_stmt(node: ast.AST, kind: str) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append((node, kind))
        visit(node, kind)

    visit(tree, "eager")
    return out


@cache
def _imports(path: Path) -> tuple[tuple[str, str], ...]:
    """(absolute module, kind) for every import in a file, relative ones resolved; kind is
    "eager", "lazy" or "typing" (see `_import_nodes`), or "lazy-cycle" for a lazy import whose
    line names the cycle it breaks (`CYCLE_MARK` followed by a reason).

    `from pkg import name` yields `pkg.name` when that is a plait module (a submodule import), and
    `pkg` itself only when some imported name is not a module.
    """
    out: list[tuple[str, str]] = []
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    for node, kind in _import_nodes(ast.parse(source)):
        if kind == "lazy" and any(
            CYCLE_MARK in line and line.split(CYCLE_MARK, 1)[1].strip()
            for line in lines[node.lineno - 1 : (node.end_lineno or node.lineno)]
        ):
            kind = "lazy-cycle"
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                pkg = _package_of(path).split(".")
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            subs = [f"{base}.{a.name}" for a in node.names]
            mods = [s for s in subs if s.startswith("plait") and _is_module(s)]
            names = mods + ([base] if len(mods) < len(subs) else [])
        out += [(name, kind) for name in names if name]
    return tuple(out)


def _files(sub: str = "") -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py"))


def _under(mod: str, *prefixes: str) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in prefixes)


def _violations(files: list[Path], *forbidden: str) -> list[str]:
    return [f"{f.relative_to(ROOT.parent)} imports {mod}"
            for f in files for mod, _ in _imports(f) if _under(mod, *forbidden)]  # fmt: skip


def test_relative_imports_are_resolved(tmp_path):
    pkg = ROOT / "threads" / "format" / "parser.py"
    assert ("plait.threads.format.codec", "eager") in _imports(pkg)
    # the resolver itself, on a relative import written for the purpose
    fake = ROOT / "threads" / "format" / "_probe_for_test.py"
    assert not fake.exists()
    try:
        fake.write_text(
            "from typing import TYPE_CHECKING\nfrom . import codec\nif TYPE_CHECKING:\n"
            "    from ..training import units\ndef f():\n    from ..inference import orchestrator\n"
        )
        got = set(_imports(fake))
        assert {("plait.threads.format.codec", "eager"), ("plait.threads.training.units", "typing"),
                ("plait.threads.inference.orchestrator", "lazy")} <= got  # fmt: skip
    finally:
        fake.unlink()
        _imports.cache_clear()


def test_runtime_imports_no_wing_eval_or_serve():
    bad = _violations(_files("runtime"), *(f"plait.{s}" for s in (*WINGS, "eval", "serve")))
    assert not bad, bad


@pytest.mark.parametrize("wing", WINGS)
def test_wings_import_neither_each_other_nor_serve(wing):
    others = [f"plait.{s}" for s in (*WINGS, "serve") if s != wing]
    bad = _violations(_files(wing), *others)
    assert not bad, bad


def test_eval_is_a_leaf_below_the_wings():
    bad = _violations(_files("eval"), *(f"plait.{s}" for s in (*WINGS, "serve")))
    assert not bad, bad


def test_base_modules_import_nothing_else_from_plait():
    for name in BASE:
        path = ROOT / f"{name.split('.')[1]}.py"
        bad = [m for m, _ in _imports(path) if _under(m, "plait") and not _under(m, *BASE)]
        assert not bad, f"{name} is a base module; it imports {bad}"


def _module_graph(kinds: tuple[str, ...] = ("eager", "lazy", "lazy-cycle")) -> dict[str, set[str]]:
    """Module -> plait modules it imports with an import of one of `kinds`."""
    graph: dict[str, set[str]] = {}
    for f in _files():
        src = _module_name(f)
        deps = {m for m, k in _imports(f) if k in kinds and _under(m, "plait") and _is_module(m)}
        graph[src] = deps - {src}
    return graph


def _top_package(module: str) -> str:
    """plait.threads.format.codec -> plait.threads; root modules (plait.cli) are their own."""
    return ".".join(module.split(".")[:2])


def _package(module: str) -> str:
    """The (sub-)package a module belongs to; a package's __init__ belongs to the package."""
    is_pkg = (ROOT.parent / Path(*module.split(".")) / "__init__.py").exists()
    return module if is_pkg or module.count(".") < 2 else module.rpartition(".")[0]


def _collapse(graph: dict[str, set[str]], key, drop_ancestors: bool = False) -> dict[str, set[str]]:  # noqa: ANN001
    out: dict[str, set[str]] = {}
    for src, deps in graph.items():
        a = key(src)
        out.setdefault(a, set())
        for dst in deps:
            b = key(dst)
            if b != a and not (drop_ancestors and a.startswith(b + ".")):
                out[a].add(b)
    return out


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None


def test_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) is not None
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    graph = _collapse({"p.x.m": {"p.y.n"}, "p.y.n": {"p.x.k"}, "p.x.k": set()}, _top_package)
    assert _cycle(graph) is not None  # modules acyclic, packages p.x <-> p.y are not


def test_no_module_import_cycle():
    """Function-level imports counted: a lazy import breaks a cycle only with a `# cycle:` reason."""
    graph = _module_graph(("eager", "lazy"))
    assert "plait.threads.format.codec" in graph
    assert _cycle(graph) is None, f"import cycle: {_cycle(graph)}"


def test_lazy_imports_that_break_a_cycle_say_why(tmp_path):
    """Marked lazy imports are the only ones left out of the module graph; a mark needs a reason."""
    probe = ROOT / "threads" / "format" / "_cycle_probe_for_test.py"
    assert not probe.exists()
    try:
        probe.write_text(
            "def f():\n    from . import codec  # cycle: optional heavy dependency\n"
            "def g():\n    from . import parser  # cycle:\n"
        )
        got = set(_imports(probe))
        assert ("plait.threads.format.codec", "lazy-cycle") in got
        assert ("plait.threads.format.parser", "lazy") in got  # no reason: counted
    finally:
        probe.unlink()
        _imports.cache_clear()
    marked = [f"{f.relative_to(ROOT.parent)}: {m}" for f in _files() for m, k in _imports(f)
              if k == "lazy-cycle"]  # fmt: skip
    assert len(marked) <= 2, f"lazy imports that break cycles (each says why): {marked}"


def test_no_top_level_package_cycle():
    graph = _collapse(_module_graph(), _top_package)
    assert {"plait.runtime", "plait.threads", "plait.eval", "plait.errors"} <= set(graph)
    assert _cycle(graph) is None, f"package cycle: {_cycle(graph)}"


def test_no_sub_package_cycle():
    """Sub-packages too; a sub-package may use modules of the package that holds it."""
    graph = _collapse(_module_graph(), _package, drop_ancestors=True)
    assert "plait.threads.format" in graph
    assert _cycle(graph) is None, f"sub-package cycle: {_cycle(graph)}"


def _closure(start: list[str]) -> set[str]:
    """Every plait module that importing `start` can run (any level; parent packages included)."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod in seen or not _is_module(mod):
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:k]) for k in range(1, len(parts))]  # parent __init__s run first
        rel = Path(*parts)
        path = ROOT.parent / rel.with_suffix(".py")
        path = path if path.exists() else ROOT.parent / rel / "__init__.py"
        todo += [m for m, _ in _imports(path) if _under(m, "plait")]
    return seen


TORCH_FREE = sorted(
    {_module_name(f) for f in _files("threads/format")}
    | {"plait.threads.inference", "plait.threads.inference.backend_api",
       "plait.threads.inference.orchestrator", "plait.threads.inference.openai_backend"}
)  # fmt: skip


@pytest.mark.parametrize("module", TORCH_FREE)
def test_format_and_orchestrator_import_no_torch(module):
    for mod in sorted(_closure([module])):
        path = ROOT.parent / Path(*mod.split("."))
        path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        torch = [m for m, _ in _imports(path) if _under(m, "torch")]
        assert not torch, f"{module} reaches {mod}, which imports {torch} (keep torch out)"


def test_format_and_orchestrator_import_no_torch_when_run():
    code = ";".join(f"import {m}" for m in TORCH_FREE) + ";import sys;print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ray_is_lazy_and_only_in_sgc_and_the_cluster_server():
    for f in _files():
        for mod, kind in _imports(f):
            if _under(mod, "ray"):
                assert "sgc" in f.parts or "cluster" in f.parts, (
                    f"{f}: only the SGC backend and plait.serve.cluster may import ray"
                )
                assert kind != "eager", f"{f}: import ray lazily, inside the function that needs it"


def test_sgc_scheme_logic_has_no_module_level_torch():
    allowed = {"training.py", "train.py", "models.py", "data.py", "cli.py"}
    for f in _files("sgc"):
        if f.name in allowed:
            continue
        for mod, kind in _imports(f):
            if _under(mod, "torch"):
                assert kind != "eager", (
                    f"{f}: sgc scheme logic must not import torch at import time"
                )
