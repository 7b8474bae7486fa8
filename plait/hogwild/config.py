"""Configuration of a Hogwild! run: workers, layout, prompts, paragraph rule, budgets, finisher.

`HogwildConfig` is the one object a user fills in; every field is validated in `__post_init__`
with an error that names the fix. Budgets are counted in forward passes (one token per worker per
pass), as in the paper; finisher tokens are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DEFAULT_NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi")
INTERJECTION_TEXT = "Quick check: am I doing redundant work? (yes/no): "
InterjectionPolicyName = Literal["global", "per_worker", "random_worker"]
TaskKind = Literal["math", "code"]


@dataclass(slots=True, kw_only=True)
class HogwildConfig:
    """Everything that shapes one Hogwild! run (model and sampling aside)."""

    workers: int = 2
    """Number of workers W (>= 1)."""
    names: tuple[str, ...] = ()
    """Worker names; empty -> the first W of `DEFAULT_NAMES`."""
    layout: str = "combined"
    """A registered layout name (see `plait.hogwild.layouts.LAYOUTS`) or a user `Layout`."""
    instant: bool = True
    """Same-step visibility: a worker sees the others' tokens of the current forward pass."""
    budgets: tuple[int, ...] = (1024,)
    """Forward-pass budgets at which a snapshot is taken; the run stops at the largest."""
    stop_on_answer: bool = True
    """Stop a problem once a worker writes a valid final answer (\\boxed{...} or a code block)."""
    task: TaskKind = "math"
    """What a final answer looks like: a balanced \\boxed{} (math) or a ```python block (code)."""
    sequential: bool = False
    """Baseline mode: one worker, a plain step-by-step prompt, no collaboration text."""
    instructions: str = ""
    """Custom collaboration instructions replacing the built-in system prompt ("" = built in)."""
    collaboration_tips: bool = False
    """Add the optional 'how to collaborate' section to the system prompt."""
    few_shot: bool = False
    """Add our short worked examples of collaboration to the system prompt."""
    interjection_every: int = 1024
    """Generated tokens between interjections ("Quick check..."); 0 disables them."""
    interjection_policy: InterjectionPolicyName = "global"
    """'global': one counter for all workers, the next worker to start a step gets it;
    'per_worker': one counter per worker; 'random_worker': a seeded random worker gets it."""
    interjection_text: str = INTERJECTION_TEXT
    suppress: tuple[str, ...] = ("#", "</think>")
    """Token texts the workers may never emit ('#' covers every all-'#' token)."""
    suppress_eos: bool = True
    """Workers never emit end-of-sequence (as in the paper); False: a worker stops at EOS."""
    finisher: bool = True
    """Run the finisher at a budget snapshot that has no final answer yet."""
    finisher_max_tokens: int = 16
    """Greedy tokens the finisher may write (16 for short math answers, ~1024 for code)."""
    step_capacity: int = 0
    """Token capacity of a step segment; 0 -> max(budgets) + 64."""
    seed: int = 0

    resolved_names: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(
                f"workers must be an integer >= 1, got {self.workers!r}; use workers=2 for two workers"
            )
        if self.sequential and self.workers != 1:
            raise ValueError(
                "sequential=True is the one-worker baseline: set workers=1 (or sequential=False)"
            )
        names = tuple(self.names) or DEFAULT_NAMES[: self.workers]
        if len(names) < self.workers:
            raise ValueError(
                f"{self.workers} workers need {self.workers} names, got {len(names)}: pass names=(...) "
                f"with one name per worker (defaults cover up to {len(DEFAULT_NAMES)})"
            )
        if len(set(names[: self.workers])) != self.workers:
            raise ValueError(f"worker names must be distinct, got {names[: self.workers]}")
        self.resolved_names = tuple(names[: self.workers])
        budgets = tuple(int(b) for b in self.budgets)
        if not budgets or any(b <= 0 for b in budgets):
            raise ValueError(
                f"budgets must be positive numbers of forward passes, got {self.budgets!r}; e.g. budgets=(256, 512)"
            )
        self.budgets = tuple(sorted(set(budgets)))
        if self.interjection_every < 0:
            raise ValueError("interjection_every must be >= 0 (0 disables the interjection)")
        if self.interjection_policy not in ("global", "per_worker", "random_worker"):
            raise ValueError(
                f"interjection_policy must be 'global', 'per_worker' or 'random_worker', got {self.interjection_policy!r}"
            )
        if self.task not in ("math", "code"):
            raise ValueError(f"task must be 'math' or 'code', got {self.task!r}")
        if self.finisher_max_tokens < 1:
            raise ValueError("finisher_max_tokens must be >= 1 (or set finisher=False)")
        if self.step_capacity < 0:
            raise ValueError("step_capacity must be >= 0 (0 = automatic)")
        if isinstance(self.layout, str):
            from plait.hogwild.layouts import LAYOUTS

            if self.layout not in LAYOUTS:
                raise ValueError(
                    f"unknown layout {self.layout!r}: use one of {sorted(LAYOUTS)} or pass a Layout object"
                )

    @property
    def max_budget(self) -> int:
        return self.budgets[-1]

    @property
    def capacity(self) -> int:
        return self.step_capacity or self.max_budget + 64
