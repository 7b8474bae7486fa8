"""JSON lines that plait writes and reads back identically (records, logs, trajectories).

- `dumps_line(record)`: one JSON text without a newline inside. Besides "\\n" and "\\r" (which
  JSON always escapes), U+2028, U+2029 and U+0085 are written as `\\u` escapes: readers that
  split on every Unicode line break (`str.splitlines`, some editors and JavaScript) would
  otherwise cut the record in two.
- `split_lines(text)`: the lines of a JSONL text, split on "\\n" only (a "\\r\\n" file's "\\r" is
  whitespace to JSON), so a raw U+2028 inside a string written by another tool stays in its line.
- `loads_line(line, where)`: one parsed line; JSON too deeply nested for the parser is a
  ValueError naming `where` (never a RecursionError).
- `read_jsonl(path)`: the records of an append-only JSONL file. The last line may lack its
  newline: if it parses it is a complete record (the run stopped between the record and its
  newline); if not, it is a torn tail, skipped with a warning. A damaged line elsewhere is an
  error naming its line.
- `JsonlAppender(path, fresh=False)`: appends one record per line and flushes each, so an
  interrupted run keeps every finished record. Opening it completes a whole last record that
  lacks its newline and cuts a torn one; `fresh=True` empties the file instead (never unlinks
  it). It refuses a path that is not a regular file (a device, a FIFO).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from plait.errors import OutputError

_LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}


def dumps_line(record: Any) -> str:
    """`record` as one line of JSON (UTF-8 text kept, Unicode line breaks escaped)."""
    text = json.dumps(record, ensure_ascii=False)
    # Outside strings json.dumps writes ASCII only, so these characters sit inside strings, where
    # an escape means the same character.
    for char, escape in _LINE_BREAKS.items():
        if char in text:
            text = text.replace(char, escape)
    return text


def split_lines(text: str) -> list[str]:
    """The lines of `text`, split on "\\n" only; a final newline ends the last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def loads_line(line: str, where: str = "JSON") -> Any:
    """Parse one JSON text; too deep a nesting is a ValueError naming `where`."""
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError(
            f"{where}: JSON nested too deeply for plait to read; flatten the record"
        ) from None


def _is_record(line: str) -> bool:
    try:
        return isinstance(loads_line(line), dict)
    except ValueError:
        return False


def read_jsonl(path: str | os.PathLike[str], warn: TextIO | None = None) -> list[dict[str, Any]]:
    """Records of a JSONL file; skips a torn last line with a warning; missing file = []."""
    p = Path(path)
    if not p.exists():
        return []
    text = p.read_text(encoding="utf-8")
    complete = text.endswith("\n")  # a file whose last write finished ends with a newline
    lines = split_lines(text)
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = loads_line(line, f"{p}:{i + 1}")
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1 and not complete:
                print(f"warning: {p}: skipping a torn last line ({len(line)} chars; an earlier "
                      "run was interrupted mid-write)", file=warn or sys.stderr)  # fmt: skip
                break
            raise OutputError(f"{p}:{i + 1}: not a JSON record ({exc.msg}); fix or remove "
                              "that line") from None  # fmt: skip
        except ValueError as exc:
            raise OutputError(str(exc)) from None
        if not isinstance(rec, dict):
            raise OutputError(f"{p}:{i + 1}: expected a JSON object per line")
        records.append(rec)
    return records


def check_regular(path: Path, flag: str = "output") -> None:
    """OutputError if `path` exists and is not a regular file (after following links)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        raise OutputError(f"{flag} {path} is a directory; give a file path")
    if not stat.S_ISREG(mode):
        raise OutputError(f"{flag} {path} is a special file (a device, FIFO or socket); "
                          "give a regular file path")  # fmt: skip


class JsonlAppender:
    """Append records to a JSONL file, one flushed line each (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str], fresh: bool = False) -> None:
        self.path = Path(path)
        check_regular(self.path)
        if fresh:
            self._f = self.path.open("w", encoding="utf-8")
            return
        self._mend_tail()
        self._f = self.path.open("a", encoding="utf-8")

    def _mend_tail(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        last = data[cut:].decode("utf-8", errors="replace")
        with self.path.open("r+b") as f:
            if _is_record(last):  # a whole record that lost only its newline
                f.seek(0, os.SEEK_END)
                f.write(b"\n")
            else:
                f.truncate(cut)

    def write(self, record: Mapping[str, Any]) -> None:
        self._f.write(dumps_line(record) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
