"""Architecture rules, checked on the source with `ast` (no imports executed).

- plait.runtime imports no subsystem (hogwild, threads, sgc);
- subsystems import runtime/eval only, never each other;
- sgc's scheme logic imports no torch at module level; ray is imported only lazily (inside
  functions), and only by the SGC Ray backend.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "plait"
SUBSYSTEMS = ("hogwild", "threads", "sgc")


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_module_level) for every import in a file."""
    tree = ast.parse(path.read_text())
    out: list[tuple[str, bool]] = []
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            out.append((name, id(node) in top))
    return out


def _files(sub: str) -> list[Path]:
    return sorted((ROOT / sub).rglob("*.py"))


def test_runtime_imports_no_subsystem():
    for f in _files("runtime"):
        for mod, _ in _imports(f):
            assert not any(mod.startswith(f"plait.{s}") for s in SUBSYSTEMS), f"{f}: imports {mod}"


@pytest.mark.parametrize("sub", SUBSYSTEMS)
def test_subsystems_do_not_import_each_other(sub):
    others = [s for s in SUBSYSTEMS if s != sub]
    for f in _files(sub):
        for mod, _ in _imports(f):
            assert not any(mod.startswith(f"plait.{o}") for o in others), f"{f}: imports {mod}"


def test_ray_is_lazy_and_only_in_sgc():
    for f in ROOT.rglob("*.py"):
        for mod, top_level in _imports(f):
            if mod == "ray" or mod.startswith("ray."):
                assert "sgc" in f.parts, f"{f}: only the SGC backend may import ray"
                assert not top_level, f"{f}: import ray lazily, inside the function that needs it"


def test_sgc_scheme_logic_has_no_module_level_torch():
    allowed = {"training.py", "train.py", "models.py", "data.py", "cli.py"}
    for f in _files("sgc"):
        if f.name in allowed:
            continue
        for mod, top_level in _imports(f):
            if mod == "torch" or mod.startswith("torch."):
                assert not top_level, f"{f}: sgc scheme logic must not import torch at import time"
