"""Incremental text for one sample: token ids in, text deltas out, stop strings matched.

Each token decodes a short window (`ids[prefix:]` minus `ids[prefix:read]`), not the whole
sequence, so the cost per token stays flat however long the output grows; a window that ends in
an incomplete multi-byte character waits for the next token. Text that could still become a stop
string is held back until it cannot; on a match the text ends before the stop string (or after
it, with `include_stop`). Twin: decoding all ids at once (tests/runtime/test_engine_text.py).
`stop_rules` decides whether a sample's new token ends it (stop id, EOS, stop string, length).
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from plait.runtime.engine.requests import EngineRequest


class TextStream:
    """Turns one sample's tokens into text deltas (see the module docstring)."""

    def __init__(
        self,
        tokenizer: Any,
        stop: tuple[str, ...] = (),
        include_stop: bool = False,
        skip_special: bool = True,
    ) -> None:
        self.tokenizer, self.stop, self.include_stop = tokenizer, stop, include_stop
        self.skip_special = skip_special
        self.ids: list[int] = []
        self.prefix = self.read = 0  # window start; end of the ids already turned into text
        self.text = ""  # all text so far (held-back part included)
        self.emitted = 0  # characters of `text` already returned
        self.matched: str | None = None
        self._hold = max((len(s) for s in stop), default=1) - 1

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special)

    def add(self, token: int) -> str:
        """Append a token; returns the text that can be shown now."""
        self.ids.append(token)
        new = self._decode(self.ids[self.prefix :])
        if new.endswith("\ufffd"):
            return ""  # an incomplete character: wait
        old = self._decode(self.ids[self.prefix : self.read])
        start = len(self.text)
        self.text += new[len(old) :]
        self.prefix, self.read = self.read, len(self.ids)
        if self.stop:
            # a stop string can end only in the new text; it may start up to hold chars earlier
            lo = max(0, start - self._hold)
            hits = [(i, s) for s in self.stop if (i := self.text.find(s, lo)) >= 0]
            if hits:
                at, s = min(hits)
                self.matched = s
                self.text = self.text[: at + len(s) if self.include_stop else at]
                return self.flush()
        keep = self._held_back()
        out = self.text[self.emitted : len(self.text) - keep]
        self.emitted += len(out)
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of the text that is a proper prefix of a stop string."""
        for n in range(min(self._hold, len(self.text)), 0, -1):
            tail = self.text[-n:]
            if any(s.startswith(tail) for s in self.stop):
                return n
        return 0

    def flush(self) -> str:
        """The rest of the text (at the end of the sample)."""
        out = self.text[self.emitted :]
        self.emitted = len(self.text)
        return out


def stop_rules(
    req: EngineRequest, text: TextStream | None, tok: int, at_budget: bool, eos: Set[int]
) -> tuple[str, str | None, int | str | None]:
    """A sample's new token `tok` through the stop rules: (its text delta, the finish reason or
    None, the stop token id or string that matched). `at_budget`: the sample has its last token."""
    reason: str | None = None
    stop: int | str | None = None
    if tok in req.stop_token_ids:
        reason, stop = "stop", tok
    elif tok in eos and not req.ignore_eos:
        reason = "stop"
    out = ""
    if text is not None:
        if reason is None or req.include_stop_str:
            out = text.add(tok)
        if text.matched is not None:
            reason, stop = "stop", text.matched
    if reason is None and at_budget:
        reason = "length"
    if reason is not None and text is not None:
        out += text.flush()
    return out, reason, stop
