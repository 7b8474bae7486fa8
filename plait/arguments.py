"""Pieces every `plait` command-line parser shares: the help formatter and the text-input reader.

- `HelpFormatter`: each option's default after its help (none for flags and unset options), the
  description and the examples epilog printed as written.
- `read_text_input(path, flag)`: the UTF-8 text of a file named on the command line ('-' reads
  standard input); a missing, unreadable, non-UTF-8 or blank file is one `UsageError` line that
  names the option, the file and the fix.
"""

from __future__ import annotations

import argparse
import sys
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
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file; check the path") from None
    except IsADirectoryError:
        raise UsageError(f"{label} is a directory; give a text file") from None
    except OSError as exc:
        raise UsageError(
            f"{label}: cannot read it ({exc.strerror}); check its permissions"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{label} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8"
        ) from None
    if not text.strip():
        raise UsageError(f"{label} is empty; put {what} in it")
    return text


DTYPE_CHOICES = ["auto", "gguf", "bf16", "fp16", "fp32"]
"""Values of every command's --dtype (plait.runtime.loading.packed explains auto and gguf)."""
DTYPE_HELP = (
    "auto (default) keeps a GGUF's quantized blocks and computes on them where the CPU can "
    "(AVX512-BF16), else bf16; gguf insists on it; bf16/fp16/fp32 dequantise"
)
