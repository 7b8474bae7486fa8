"""The base of plait's user-facing errors.

`PlaitError` is what a caller did wrong (bad input, a missing file, a stale output, an
unreachable server) and says how to fix it; the CLI prints its message as one line and exits 2.
Subclasses also derive from the matching builtin (ValueError, FileNotFoundError, ...) where there
is one, so code that catches builtins keeps working. Bugs are not PlaitErrors.
"""

from __future__ import annotations


class PlaitError(Exception):
    """A user error: the message names the problem and the fix."""


class UsageError(PlaitError, ValueError):
    """An argument or input value that plait cannot use (wrong range, type or combination)."""


class OutputError(PlaitError, OSError):
    """An output path that cannot be written, or an existing output that a run must not reuse."""
