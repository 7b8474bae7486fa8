"""`plait eval`: the command group that the wings fill with their evaluations.

eval is a leaf below the wings: it imports none of them. A wing's CLI adds its own evaluation
with `evaluation_parsers(subparsers).add_parser(...)` (plait.hogwild.cli adds `plait eval
hogwild`); the group is created by whichever registration comes first, so the order in which
`plait.cli` registers modules does not matter.
"""

from __future__ import annotations

import argparse
from typing import Any


def evaluation_parsers(subparsers: Any) -> Any:
    """The sub-command action of `plait eval` (created on first use) for a wing to add to."""
    group = subparsers.choices.get("eval")
    if group is None:
        group = subparsers.add_parser(
            "eval",
            help="evaluations (accuracy vs budget)",
            description="Evaluations; each wing adds its own (e.g. `plait eval hogwild`).",
        )
        group.add_subparsers(dest="eval_command", metavar="EVAL")
        group.set_defaults(func=lambda args: group.print_help() or 0)
    return next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))


def register(subparsers: Any) -> None:
    """Add the `plait eval` group (the wings add its sub-commands)."""
    evaluation_parsers(subparsers)
