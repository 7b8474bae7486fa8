"""What the `plait threads` commands share: reading the input file, printing the result."""

from __future__ import annotations

import argparse
import json
from typing import Any

from plait.threads.data.records import TrajectoryRecord, load_format, read_records
from plait.threads.format.codec import ThreadFormat


def load(
    args: argparse.Namespace, *, check_vocab: bool = True
) -> tuple[ThreadFormat, list[TrajectoryRecord]]:
    """The format of `--tokenizer` and the trajectories of `args.file` (at least one)."""
    fmt = load_format(args.tokenizer)
    return fmt, read_records(args.file, fmt, check_vocab=check_vocab)


def emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    """One JSON object with `--json`, else the readable text."""
    print(json.dumps(obj) if getattr(args, "json", False) else text)
