"""Fixtures shared by every test package. Shared plain helpers (tiny models, checkpoints, toy
tokenizers, random thread structures) live in `tests/helpers/`; test modules import from there,
never from each other."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def plait_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty plait cache directory (PLAIT_CACHE_DIR) for one test; not created yet.

    plait's CPU kernels are loaded from the real cache first: a model load would otherwise
    compile them again (about 80 s) inside the empty one."""
    from plait.runtime import kernels

    kernels.available()
    root = tmp_path / "cache"
    monkeypatch.setenv("PLAIT_CACHE_DIR", str(root))
    return root
