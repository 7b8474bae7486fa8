"""Where plait keeps converted models and built kernels, and how it writes there safely.

The cache root is `$PLAIT_CACHE_DIR` if set, else `~/.cache/plait`. Converted models live in
`<root>/models/<key>/`; assembled bundled GGUF files in `<root>/bundled/<name>/` (both written by
`plait.runtime.loading`); plait's CPU kernels build under `<root>/kernels/`. Every entry is
written into a temporary sibling and renamed into place, so a crash or a concurrent writer never
leaves a half-written entry under the final name. A writer killed outright (SIGKILL, power loss)
leaves its temporary sibling behind; `sweep_stale` removes those once nobody has written to them
for an hour (models load through it). A kernel build holds `build_lock` (an flock released
when its holder dies), so a torch build `lock` file found under it is stale and removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plait import outputs

CACHE_ENV = "PLAIT_CACHE_DIR"
META_FILE = "plait-cache.json"  # written last into every converted-model entry
CACHE_FORMAT = 3  # bump when the layout or content of a converted entry changes
STALE_AFTER_S = 3600.0  # a temporary entry nobody wrote to for this long is left by a dead writer
_TEMP_PREFIXES = (".tmp-", ".old-")  # atomic_dir/atomic_file siblings, _replace's moved-aside entry


def cache_root() -> Path:
    """The cache root directory (not created)."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "plait"


def models_dir() -> Path:
    """Directory holding one sub-directory per converted model."""
    return cache_root() / "models"


def bundled_dir(name: str) -> Path:
    """Directory holding the assembled source file of bundled model `name`."""
    return cache_root() / "bundled" / name


def read_meta(entry: Path) -> dict[str, Any] | None:
    """The metadata of a converted entry, or None if the entry is absent or incomplete."""
    try:
        meta = json.loads((entry / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        return None
    return meta


def _writable_parent(final: Path) -> Path:
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermissionError(
            f"cannot create the plait cache directory {parent}: {exc}; set {CACHE_ENV} to a "
            "writable directory"
        ) from exc
    return parent


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _replace(tmp: Path, final: Path) -> None:
    """Move tmp to final; an older final is moved aside first and deleted after."""
    old: Path | None = None
    if final.exists():
        old = final.with_name(f".old-{final.name}-{os.getpid()}")
        _remove(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        _remove(old)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes `final` when the block succeeds.

    On an exception the temporary directory is removed and `final` is left untouched.
    """
    parent = _writable_parent(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent))
    try:
        yield tmp
        _replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[Path]:
    """Yield a temporary file path that is renamed to `final` when the block succeeds."""
    _writable_parent(final)
    with outputs.atomic_file(final) as tmp:
        yield tmp


def dir_size(path: Path) -> int:
    """Total bytes of the regular files under `path` (0 if absent)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_cached() -> list[dict[str, Any]]:
    """Every complete cache entry: key, name, family, source kind, size and path."""
    root = models_dir()
    out: list[dict[str, Any]] = []
    if not root.is_dir():
        return out
    for entry in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        meta = read_meta(entry)
        if meta is None:
            continue
        size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
        out.append(
            {
                "key": entry.name,
                "name": meta.get("name", entry.name),
                "family": meta.get("family"),
                "source": meta.get("source", {}).get("kind"),
                "weight_format": meta.get("weight_format", "bf16"),  # packed: GGUF blocks
                "packed_types": meta.get("packed_types", []),
                "resident_bytes": meta.get("resident_bytes"),
                "size_bytes": size,
                "path": str(entry),
            }
        )
    return out


def _last_write(path: Path) -> float:
    """Newest mtime of `path` and everything under it (a live writer keeps it fresh)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for p in path.rglob("*"):
            try:
                newest = max(newest, p.lstat().st_mtime)
            except OSError:  # removed while we looked
                continue
    return newest


def sweep_stale(max_age_s: float = STALE_AFTER_S, now: float | None = None) -> list[Path]:
    """Remove the temporary entries under `models/` and `bundled/*/` that nobody has written to
    for `max_age_s` seconds (left by a conversion or a copy killed before it could clean up: up
    to a gigabyte each) and say so on stderr, one line each; returns the removed paths."""
    now = time.time() if now is None else now
    root = cache_root()
    parents = [root / "models", *(sorted((root / "bundled").glob("*/")))]
    removed: list[Path] = []
    for parent in parents:
        if not parent.is_dir():
            continue
        for entry in sorted(parent.iterdir()):
            if not entry.name.startswith(_TEMP_PREFIXES):
                continue
            try:
                idle = now - _last_write(entry)
                size = dir_size(entry) if entry.is_dir() else entry.stat().st_size
            except OSError:  # removed by its owner or another sweeper meanwhile
                continue
            if idle < max_age_s:
                continue
            _remove(entry)
            if entry.exists():  # not ours to delete (permissions): leave it, say nothing
                continue
            removed.append(entry)
            print(
                f"plait: removed {entry} ({size / 1e6:.0f} MB), left in the cache by an "
                f"interrupted conversion {idle / 3600:.1f} h ago",
                file=sys.stderr,
            )
    return removed


BUILD_LOCK = "plait-build.lock"  # held (flock) by the plait process building in a directory
TORCH_LOCK = "lock"  # torch.utils.cpp_extension's build baton: it waits while the file exists


@contextlib.contextmanager
def build_lock(directory: Path) -> Iterator[None]:
    """Hold the kernel build of `directory` for this process: an exclusive `flock` on
    `plait-build.lock` (the kernel releases it when its holder dies, however it dies). Once it is
    held, a torch build `lock` file left in `directory` belongs to a builder that was killed
    (every plait builder holds the flock while torch's lock exists), and waiting on it would hang
    forever: it is removed, with one stderr line."""
    import fcntl  # POSIX only; the kernels build only on Linux

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / BUILD_LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"plait: waiting for another process building kernels in {directory}",
                  file=sys.stderr)  # fmt: skip
            fcntl.flock(f, fcntl.LOCK_EX)
        stale = directory / TORCH_LOCK
        if stale.exists():
            stale.unlink(missing_ok=True)
            print(f"plait: removed {stale}, left by a kernel build that was killed",
                  file=sys.stderr)  # fmt: skip
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
