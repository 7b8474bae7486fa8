"""Output files that commands produce: checked before the work, appended as it goes, resumable.

- `check_writable(path, flag, inputs=())`: before a long run, fail fast if `path` could not be
  written: a missing parent directory, no permission, a directory, a device, FIFO or socket in
  its place (refused, never replaced), or the same file as one of the command's `inputs`.
  Symbolic links are followed, as GNU tools writing a file do: the file a link points to is
  replaced and the link itself is kept.
- `read_jsonl`, `JsonlAppender` (from `plait.jsonl`): append-only JSONL records, resumable.
- `Manifest`: the settings a results file or directory was produced with; a rerun with
  different settings is refused unless the caller chose to overwrite.
- `atomic_file(path)`: a temporary path beside `path` (beside the file a link points to) that
  becomes `path` when the block succeeds (any writer: torch.save, numpy); `atomic_write_bytes` /
  `atomic_write_text` on top of it. The file is whole or absent, never half-written, gets the
  permissions a plain write would, and the temporary name fits the 255-byte name limit.
- `save_figure(fig, path)`: a matplotlib figure saved through `atomic_file`.

No helper here unlinks a path the command did not create.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from plait.errors import OutputError
from plait.jsonl import JsonlAppender, check_regular, read_jsonl

__all__ = ["JsonlAppender", "Manifest", "atomic_file", "atomic_write_bytes", "atomic_write_text",
           "check_writable", "check_writable_dir", "read_jsonl", "save_figure"]  # fmt: skip
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def check_writable(
    path: str | os.PathLike[str],
    flag: str = "output",
    inputs: Iterable[tuple[str, str | os.PathLike[str] | None]] = (),
) -> Path:
    """Raise OutputError unless a regular file could be created (or replaced) at `path`.

    `inputs` are (flag, path) pairs the same command reads ('-' and None are skipped): writing
    over one of them would destroy it before (or while) it is read.
    """
    p = Path(path)
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise OutputError(f"{flag} {p}: the file name is over {NAME_MAX} bytes; shorten it")
    check_regular(p, flag)
    if not p.name:
        raise OutputError(f"{flag} {p}: not a file name; give a file path")
    for in_flag, source in inputs:
        if source is not None and str(source) != "-" and _same_file(p, Path(source)):
            raise OutputError(f"{flag} {p} is the same file as {in_flag} {source}; writing it "
                              "would destroy that: choose another output path")  # fmt: skip
    real = Path(os.path.realpath(p))  # a link's target (a dangling link: where it would be)
    parent = real.parent
    if not parent.exists():
        raise OutputError(f"{flag} {p}: directory {parent} does not exist (create it first)")
    if not parent.is_dir():
        raise OutputError(f"{flag} {p}: {parent} is not a directory")
    target = real if real.exists() else parent
    if not os.access(target, os.W_OK) or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {p}: no permission to write {target}")
    return p


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # either is missing: compare where they would be
        return os.path.realpath(a) == os.path.realpath(b)


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


def _temp_prefix(name: str) -> str:
    """`.tmp-<name>-`, the name cut so that the temporary name (+ 8 random characters) fits."""
    room = NAME_MAX - len(".tmp--") - 8 - 8  # mkstemp adds 8 characters; a margin for suffixes
    short = os.fsencode(name)[:room].decode("utf-8", errors="ignore")
    return f".tmp-{short}-"


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path (`.tmp-<name>-*` beside `path`) for the block to write; on success
    it is renamed to `path`, on any exception removed, so `path` is never half-written.

    A symbolic link is followed (its target is replaced, the link kept); a directory or special
    file at `path` is refused (OutputError) before anything is written. The new file gets the
    mode a plain write would give it (an existing file's mode is kept). An OSError about the
    temporary file is raised naming `path`.
    """
    p = Path(path)
    check_regular(p)
    real = Path(os.path.realpath(p))
    try:
        fd, name = tempfile.mkstemp(dir=real.parent, prefix=_temp_prefix(real.name))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(p)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, real.stat().st_mode & 0o7777 if real.is_file() else _new_file_mode())
        os.replace(tmp, real)
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


class Manifest:
    """The settings behind a results file or directory, stored as JSON beside them."""

    def __init__(self, path: str | os.PathLike[str], settings: Mapping[str, Any]) -> None:
        self.path = Path(path)
        try:  # normalised (tuples -> lists); NaN or infinity is refused: it is not JSON
            self.settings = json.loads(json.dumps(dict(settings), allow_nan=False))
        except ValueError:
            raise OutputError(f"{self.path}: the settings hold NaN or infinity, which JSON "
                              "cannot store; give finite numbers") from None  # fmt: skip

    def differences(self) -> list[str]:
        """Keys whose stored value differs from ours ([] if none stored)."""
        if not self.path.exists():
            return []
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError):  # JSON or UTF-8 errors
            return ["<unreadable manifest>"]
        if not isinstance(stored, dict):
            return [f"<manifest is a JSON {type(stored).__name__}, not an object>"]
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
