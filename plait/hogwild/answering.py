"""Which final answer a run has: the first worker's, or a vote of the workers.

- `first` (the paper's rule): the first complete `\\boxed{}` (or code block) any worker writes is
  final and the run stops; its source is `worker:<name>`.
- `vote`: each worker's first answer is its vote and that worker stops writing (the others go on,
  and still see its text). Once every worker has voted, the answer written by the most workers is
  final (ties: the one written first); its source is `vote:<votes>/<voters>`. At a budget reached
  before every worker voted, the votes so far decide; with no vote yet, the finisher runs.
"""

from __future__ import annotations

from collections import Counter

from plait.eval.checking import normalise
from plait.hogwild.answers import final_answer

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
