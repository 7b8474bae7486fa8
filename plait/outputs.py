"""Output files that commands produce: checked before the work, appended as it goes, resumable.

- `check_writable(path, flag)`: before a long run, fail fast if `path` could not be written
  (missing parent directory, a directory in its place, no permission).
- `read_jsonl(path)`: the records of an append-only JSONL file; a torn last line (a run killed
  mid-write) is skipped with a warning, a damaged line elsewhere is an error naming its line.
- `JsonlAppender`: appends one record per line and flushes each, so an interrupted run keeps
  every finished record and a rerun can resume from them.
- `Manifest`: the settings a results directory was produced with; a rerun with different settings
  is refused unless the caller chose to overwrite.
- `atomic_file(path)`: a temporary path beside `path` that becomes `path` when the block succeeds
  (any writer: torch.save, numpy); `atomic_write_bytes` / `atomic_write_text` on top of it. The
  file is whole or absent, never half-written, and gets the permissions a plain write would.
- `save_figure(fig, path)`: a matplotlib figure saved through `atomic_file`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from plait.errors import OutputError


def check_writable(path: str | os.PathLike[str], flag: str = "output") -> Path:
    """Raise OutputError unless a file could be created (or replaced) at `path`."""
    p = Path(path)
    if p.exists() and p.is_dir():
        raise OutputError(f"{flag} {p} is a directory; give a file path")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{flag} {p}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputError(f"{flag} {p}: {parent} is not a directory")
    target = p if p.exists() else parent
    if not os.access(target, os.W_OK):
        raise OutputError(f"{flag} {p}: no permission to write {target}")
    return p


def check_writable_dir(path: str | os.PathLike[str], flag: str = "output directory") -> Path:
    """Raise OutputError unless `path` is (or can be made as) a writable directory."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"{flag} {p} is a file; give a directory")
        if not os.access(p, os.W_OK):
            raise OutputError(f"{flag} {p}: no permission to write it")
        return p
    check_writable(p, flag)
    return p


@functools.cache
def _new_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file (0o666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (`.tmp-<name>-*` beside `path`) for the block to write; on success
    it is renamed to `path`, on any exception removed, so `path` is never half-written.

    The new file gets the mode a plain write would give it (an existing file's mode is kept). An
    OSError about the temporary file is raised naming `path`.
    """
    p = Path(path)
    try:
        fd, name = tempfile.mkstemp(dir=p.parent, prefix=f".tmp-{p.name}-")
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, p.stat().st_mode & 0o7777 if p.is_file() else _new_file_mode())
        os.replace(tmp, p)
    except OSError as exc:
        if exc.filename != name or exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` whole or not at all (see `atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` as UTF-8, whole or not at all (see `atomic_file`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def save_figure(fig: Any, path: str | os.PathLike[str], **kwargs: Any) -> None:
    """Save a matplotlib figure through `atomic_file`: a run stopped mid-write leaves no half PNG.

    The format comes from `path`'s suffix (png without one), given explicitly because the
    temporary file's name has no suffix (matplotlib would otherwise append one to it).
    """
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format=fmt, **kwargs)


def read_jsonl(path: str | os.PathLike[str], warn: TextIO | None = None) -> list[dict[str, Any]]:
    """Records of a JSONL file; skips a torn last line with a warning; missing file = []."""
    p = Path(path)
    if not p.exists():
        return []
    lines = p.read_text(encoding="utf-8").split("\n")
    complete = lines[-1] == ""  # a file whose last write finished ends with a newline
    if complete:
        lines = lines[:-1]
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if last and not complete:
                print(f"warning: {p}: skipping a torn last line ({len(line)} chars; an earlier "
                      "run was interrupted mid-write)", file=warn or sys.stderr)  # fmt: skip
                break
            raise OutputError(f"{p}:{i + 1}: not a JSON record ({exc.msg}); fix or remove "
                              "that line") from None  # fmt: skip
        if not isinstance(rec, dict):
            raise OutputError(f"{p}:{i + 1}: expected a JSON object per line")
        records.append(rec)
    return records


class JsonlAppender:
    """Append records to a JSONL file, one flushed line each (a torn tail is cut off first)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._truncate_torn_tail()
        self._f = self.path.open("a", encoding="utf-8")

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.path.open("r+b") as f:
                f.truncate(cut)

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Manifest:
    """The settings behind a results file or directory, stored as JSON beside them."""

    def __init__(self, path: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self.settings = json.loads(json.dumps(dict(settings)))  # normalised (tuples -> lists)

    def differences(self) -> list[str]:
        """Keys whose stored value differs from ours ([] if none stored)."""
        if not self.path.exists():
            return []
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return ["<unreadable manifest>"]
        keys = sorted(set(stored) | set(self.settings))
        return [k for k in keys if stored.get(k) != self.settings.get(k)]

    def check(self, overwrite: bool) -> bool:
        """Refuse (OutputError) to reuse results made with other settings unless `overwrite`.

        Returns True when the caller should start afresh (overwrite of differing results),
        False when results may be resumed. Writes the manifest.
        """
        diff = self.differences()
        fresh = False
        if diff:
            if not overwrite:
                shown = ", ".join(diff[:6]) + (" ..." if len(diff) > 6 else "")
                raise OutputError(f"{self.path.parent} holds results made with other settings "
                                  f"({shown}); pass --overwrite to replace them, or choose "
                                  "another output directory")  # fmt: skip
            fresh = True
        atomic_write_text(self.path, json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        return fresh
