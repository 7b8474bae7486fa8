"""`plait threads pack`: extract every trajectory's units and trie-pack them into training rows.

Only valid trajectories are packed (an invalid one is an error naming it: fix it or run
`plait threads normalize`), and a row length that fits no trajectory is an error; units dropped
whole because a trajectory's trie overflows a row are reported (and warned about on stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from plait.errors import UsageError
from plait.outputs import atomic_file, check_writable
from plait.threads.cli.common import emit, load
from plait.threads.format.validate import explain, validate
from plait.threads.training.units import extract_units


def _save(rows: list[Any], path: str) -> None:
    """torch.save, whole or not at all (into an open file: torch names the archive inside after a
    path's stem, which the temporary name of a suffixless --out would leave empty)."""
    import torch

    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save(rows, f)


def cmd_pack(args: argparse.Namespace) -> int:
    try:
        from plait.threads.training.packing import pack_rows
    except ImportError as exc:
        raise UsageError(
            f"plait threads pack needs plait.threads.training.packing, which is unavailable "
            f"({exc}); install plait with torch"
        ) from None
    if args.row_length < 1:
        raise UsageError(f"--row-length must be >= 1, got {args.row_length}")
    if args.out:
        check_writable(args.out, "--out", [("FILE", args.file)])
    fmt, recs = load(args)
    for i, r in enumerate(recs):
        if r.prompt_len < 1:
            raise UsageError(
                f"{args.file}: trajectory #{i} has no prompt (prompt_len 0): the first unit's "
                "context is the prompt; add 'prompt' / 'prompt_len' to the records"
            )
        errs = validate(r.tokens, fmt, prompt_len=r.prompt_len)
        if errs:
            raise UsageError(
                f"{args.file}: trajectory #{i} is not valid ({explain(r.tokens, fmt, errs[0])}); "
                "only valid trajectories are packed: fix it, or run `plait threads normalize`"
            )
    units = [extract_units(r.tokens, fmt, prompt_len=r.prompt_len, inserted=r.inserted)
             for r in recs]  # fmt: skip
    rows, rep = pack_rows(units, args.row_length)
    if not rows:
        need = min(len(u[0].context) + len(u[0].completion) for u in units)
        raise UsageError(
            f"no trajectory fits in a row of {args.row_length} tokens (the shortest full "
            f"trajectory has {need}); raise --row-length to at least {need}"
        )
    if rep.n_dropped_units:
        print(f"warning: {rep.n_dropped_units} unit(s) of {len(rep.dropped_units)} trajectories "
              f"did not fit in {args.row_length} tokens and were left out", file=sys.stderr)  # fmt: skip
    out = {"trajectories": len(recs), "units": sum(len(u) for u in units), "rows": rep.rows,
           "packed_tokens": rep.tokens, "padding": rep.padding, "unit_tokens": rep.unit_tokens,
           "dropped_units": rep.n_dropped_units, "dropped_trajectories": rep.dropped_trajectories}  # fmt: skip
    if args.out:
        _save(rows, args.out)
        out["saved"] = args.out
    emit(args, out, "\n".join(f"{k:22s} {v}" for k, v in out.items()))
    return 0
