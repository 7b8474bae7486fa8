"""Answers: finding them in text, and which final answer a run has.

Finding: `\\boxed{...}` with balanced braces (math; the original parser cut
`\\boxed{\\frac{1}{2}}` at the first "}", here braces are matched and escaped braces `\\{`, `\\}`
do not count) and the last compiling code block (code); `placeholders` are the prompt's own
example answers, never taken as a worker's.

Choosing (`Answers`, per the config's `answer_policy`):
- `first` (the paper's rule): the first complete `\\boxed{}` (or code block) any worker writes is
  final and the run stops; its source is `worker:<name>`.
- `vote`: each worker's first answer is its vote and that worker stops writing (the others go on,
  and still see its text). Once every worker has voted, the answer written by the most workers is
  final (ties: the one written first); its source is `vote:<votes>/<voters>`. At a budget reached
  before every worker voted, the votes so far decide; with no vote yet, the finisher runs.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from plait.eval.checking import normalise

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_CODE = re.compile(r"```[ \t]*(python|py)?[ \t]*\n(.*?)```", re.DOTALL)


def match_brace(text: str, open_idx: int) -> int:
    """Index of the "}" that closes the "{" at `open_idx`, or -1 if it never closes."""
    if text[open_idx] != "{":
        raise ValueError(f"text[{open_idx}] is {text[open_idx]!r}, not '{{'")
    depth, i = 0, open_idx
    while i < len(text):
        ch = text[i]
        if ch == "\\":  # skip escaped characters such as \{ and \}
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def boxed_contents(text: str) -> list[str]:
    """Contents of every complete \\boxed{...} in `text`, left to right (nested braces kept)."""
    out = []
    for m in _BOXED.finditer(text):
        end = match_brace(text, m.end() - 1)
        if end >= 0:
            out.append(text[m.end() : end].strip())
    return out


def last_boxed(text: str, valid: Callable[[str], bool] | None = None) -> str | None:
    """The right-most complete \\boxed{} content that is non-empty and passes `valid`."""
    for content in reversed(boxed_contents(text)):
        if content and (valid is None or valid(content)):
            return content
    return None


def compiles(source: str) -> bool:
    try:
        compile(source, "<answer>", "exec")
    except (SyntaxError, ValueError):
        return False
    return True


def last_code_block(text: str) -> str | None:
    """The last complete ```python (or bare ```) block whose source compiles."""
    for m in reversed(list(_CODE.finditer(text))):
        source = m.group(2)
        if source.strip() and compiles(source):
            return source
    return None


_STATED = re.compile(r"answer is '?(\w+)", re.IGNORECASE)


def placeholders(prompt: str) -> frozenset[str]:
    """Answers the prompt shows as placeholders: box contents without a digit ("N" in "write
    \\boxed{N}", "answer") and the word of "the answer is N". A worker that boxes one of them
    (copying the instructions) has not answered."""
    shown = boxed_contents(prompt) + _STATED.findall(prompt)
    return frozenset(c for c in shown if not any(ch.isdigit() for ch in c))


def final_answer(text: str, task: str = "math", skip: frozenset[str] = frozenset()) -> str | None:
    """The final answer in `text` for a task kind ('math' -> the last box whose content is not in
    `skip`, 'code' -> the last compiling code block)."""
    if task == "math":
        return last_boxed(text, lambda c: c not in skip)
    if task == "code":
        return last_code_block(text)
    raise ValueError(f"task must be 'math' or 'code', got {task!r}")


ANSWER_POLICIES = ("first", "vote")


class Answers:
    """Answer bookkeeping for one problem's W workers."""

    def __init__(
        self, policy: str, names: tuple[str, ...], task: str, skip: frozenset[str] = frozenset()
    ) -> None:
        if policy not in ANSWER_POLICIES:
            raise ValueError(f"answer policy must be one of {ANSWER_POLICIES}, got {policy!r}")
        self.policy, self.names, self.task, self.skip = policy, names, task, skip
        self.votes: dict[int, str] = {}  # worker -> its answer, in the order they were written
        self.final: tuple[str, str] | None = None
        """(answer, source) once the run's answer is decided."""

    def check(self, texts: list[str]) -> list[int]:
        """Look for answers in the workers' current step texts; returns workers that just voted
        (they stop writing). Nothing changes once the answer is final."""
        if self.final is not None:
            return []
        voted = []
        for i, text in enumerate(texts):
            if i in self.votes:
                continue
            ans = final_answer(text, self.task, self.skip)
            if ans is None:
                continue
            if self.policy == "first":
                self.final = (ans, f"worker:{self.names[i]}")
                return []
            self.votes[i] = ans
            voted.append(i)
        if self.policy == "vote" and len(self.votes) == len(self.names):
            self.final = self.tally()
        return voted

    def tally(self) -> tuple[str, str] | None:
        """The most common vote so far (ties: written first), or None without votes."""
        if not self.votes:
            return None
        keys = [normalise(a) for a in self.votes.values()]
        counts = Counter(keys)
        best = max(counts.values())
        winner = next(a for a, k in zip(self.votes.values(), keys) if counts[k] == best)
        return winner, f"vote:{best}/{len(self.votes)}"

    def at_budget(self) -> tuple[str, str] | None:
        """The answer a budget snapshot records (None: the finisher decides)."""
        return self.final or (self.tally() if self.policy == "vote" else None)
