"""Pieces every `plait` command-line parser shares: the help formatter and the text-input reader.

- `HelpFormatter`: each option's default after its help (none for flags and unset options), the
  description and the examples epilog printed as written.
- `read_text_input(path, flag)`: the UTF-8 text of a file named on the command line ('-' reads
  standard input); a missing, unreadable, non-UTF-8 or blank file is one `UsageError` line that
  names the option, the file and the fix; standard input closed or unreadable is one line too.
- `finite_float`, `int_in(low, high)`: argparse types that refuse NaN, infinities and integers
  beyond a bound (so a huge value is refused before anything is allocated for it).
- `require_extra(module, extra, what)`: before the work, one `UsageError` line naming the pip
  extra to install when an optional dependency is missing.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path

from plait.errors import UsageError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each option's help (none for flags and unset options); epilogs as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:  # not 0: 0 == False
            return action.help
        return super()._get_help_string(action)


def read_text_input(path: str, flag: str = "--file", what: str = "the text") -> str:
    """The text of `path` ('-' = standard input) as UTF-8; UsageError unless it holds some.

    `flag` names the option in the message and `what` the content the file should hold
    ("the prompt", "one prompt per line").
    """
    label = f"{flag} {'- (standard input)' if path == '-' else path}"
    try:
        data = _read_stdin() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{label} is a directory; give a text file") from None
    except OSError as exc:
        fix = "pipe the text in or give a file path" if path == "-" else "check its permissions"
        raise UsageError(f"{label}: cannot read it ({exc.strerror}); {fix}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{label} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise UsageError(f"{label} is empty; put {what} in it")
    return text


def _read_stdin() -> bytes:
    """All of standard input; OSError when it is closed (`<&-`) or not readable."""
    stream = sys.stdin
    if stream is None or getattr(stream, "closed", False):
        raise OSError(9, "standard input is closed")
    try:
        return stream.buffer.read()
    except (AttributeError, ValueError) as exc:  # no buffer, or a closed file underneath
        raise OSError(9, f"standard input is not readable ({exc})") from None


def finite_float(text: str) -> float:
    """argparse type: a finite float (NaN and infinities are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_in(low: int, high: int) -> Callable[[str], int]:
    """argparse type: an integer in low..high (the bound keeps huge values from allocating)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in {low}..{high}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def require_extra(module: str, extra: str, what: str) -> None:
    """UsageError unless `module` can be imported: `what` needs it; the message names the extra.

    Checked with `find_spec` (nothing is imported), before the work starts.
    """
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        found = False
    if not found:
        raise UsageError(f"{what} needs the package {module}, which is not installed; install "
                         f"it with pip install -e '.[{extra}]' (or pip install 'plait[{extra}]')")  # fmt: skip


DTYPE_CHOICES = ["auto", "gguf", "gguf-exact", "bf16", "fp16", "fp32"]
"""Values of every command's --dtype (plait.runtime.loading.packed explains the GGUF modes)."""
DTYPE_HELP = (
    "auto (default) keeps a GGUF's quantized blocks and computes on them where the CPU can "
    "(AVX512-BF16/VNNI; activations quantised to int8 per block, as llama.cpp does), else bf16; "
    "gguf insists on it; gguf-exact keeps the blocks with exact bf16 activations (slower); "
    "bf16/fp16/fp32 dequantise"
)
