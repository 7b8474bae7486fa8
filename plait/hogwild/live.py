"""Terminal views of a running Hogwild! solve: live columns (one per worker) or a plain log.

`LiveView` redraws at most every `interval` seconds with ANSI escapes: one column per worker
showing the tail of what it wrote (finished steps of that worker and its current step). When the
output is not a terminal, `PlainView` prints each finished step once, prefixed by nothing (the
step text carries its "**Name [k]:**" header).
"""

from __future__ import annotations

import shutil
import sys
import textwrap
import time
from typing import TextIO

from plait.hogwild.events import CutEvent, Event, SnapshotEvent, StepEvent, TokenEvent

COLORS = ("\x1b[36m", "\x1b[33m", "\x1b[35m", "\x1b[32m", "\x1b[34m", "\x1b[31m")
RESET, CLEAR = "\x1b[0m", "\x1b[H\x1b[2J"


def columns(texts: list[str], names: list[str], width: int, height: int) -> list[str]:
    """Lay out one column per worker (the tail of each text), `width` characters wide in total."""
    w = len(texts)
    col = max(12, (width - 3 * (w - 1)) // w)
    wrapped = []
    for text in texts:
        lines = []
        for para in text.split("\n"):
            lines += textwrap.wrap(para, col) or [""]
        wrapped.append(lines[-height:])
    rows = [" | ".join(n[:col].ljust(col) for n in names), "-+-".join("-" * col for _ in names)]
    for r in range(max(len(x) for x in wrapped)):
        rows.append(" | ".join((x[r] if r < len(x) else "").ljust(col) for x in wrapped))
    return rows


class LiveView:
    """Side-by-side live columns of the workers of one problem."""

    def __init__(
        self, names: tuple[str, ...], out: TextIO | None = None, interval: float = 0.2
    ) -> None:
        self.names, self.out, self.interval = list(names), out or sys.stdout, interval
        self.texts = ["" for _ in names]
        self.status = ""
        self.cuts = 0
        self._last = 0.0

    def __call__(self, event: Event) -> None:
        if isinstance(event, TokenEvent):
            self.texts[event.worker] += event.text
            self.status = f"pass {event.pass_index}"
        elif isinstance(event, CutEvent):  # the loop guard removed a repeated step's text
            text = self.texts[event.worker]
            if event.text and text.endswith(event.text):
                self.texts[event.worker] = text[: -len(event.text)]
            self.cuts += 1
        elif isinstance(event, SnapshotEvent):
            s = event.snapshot
            self.status = f"budget {s.budget}: answer {s.answer!r} ({s.answer_source})"
            self.draw(force=True)
            return
        self.draw()

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        size = shutil.get_terminal_size((120, 40))
        rows = columns(self.texts, self.names, size.columns, max(5, size.lines - 5))
        colored = [COLORS[0] + rows[0] + RESET, *rows[1:]]
        cuts = f" | loop guard: {self.cuts} repeated steps cut" if self.cuts else ""
        self.out.write(CLEAR + "\n".join(colored) + f"\n\n{self.status}{cuts}\n")
        self.out.flush()


class PlainView:
    """Prints finished steps and snapshots as lines (for pipes and logs)."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self.out.write(event.text.rstrip() + "\n\n")
        elif isinstance(event, SnapshotEvent):
            s = event.snapshot
            self.out.write(
                f"[budget {s.budget}, {s.passes} passes] answer: {s.answer!r} ({s.answer_source})\n"
            )
        self.out.flush()
