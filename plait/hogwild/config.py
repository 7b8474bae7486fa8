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
MAX_TOKENS = 1 << 20  # budgets and finisher tokens: no model's context holds more


def _check_int(name: str, value: object, low: int | None, hint: str) -> None:
    """Raise ValueError unless `value` is an int (not a bool or float) >= `low`."""
    if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise ValueError(f"{name} must be an integer{bound}, got {value!r}; {hint}")


def default_names(workers: int) -> tuple[str, ...]:
    """The first W of `DEFAULT_NAMES`, then "Worker9", "Worker10", ... for more than eight."""
    extra = tuple(f"Worker{k + 1}" for k in range(len(DEFAULT_NAMES), workers))
    return (DEFAULT_NAMES + extra)[:workers]


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
    answer_policy: str = "first"
    """'first': the first worker's final answer ends the run (the paper's rule); 'vote': each
    worker's first answer is its vote and it stops, the most common answer wins
    (`plait.hogwild.answering`)."""
    task: TaskKind = "math"
    """What a final answer looks like: a balanced \\boxed{} (math) or a ```python block (code)."""
    sequential: bool = False
    """Baseline mode: one worker, a plain step-by-step prompt, no collaboration text."""
    prompt: str = ""
    """Prompt variant (`plait.hogwild.variants.VARIANTS`): Hogwild 'full' | 'short' | 'roles'
    | 'short_after' | 'roles_after' | 'team_after' | 'plain_after', sequential 'answer_is_after' |
    'answer_is' | 'answer_boxed' | 'boxed' | 'worked'; "" = 'full' / 'answer_is_after'."""
    instructions: str = ""
    """Custom collaboration instructions replacing the variant's text ("" = the variant's)."""
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
    suppress: tuple[str, ...] | None = None
    """Token texts the workers may never emit ('#' covers every all-'#' token); None = ('#',
    '</think>') for Hogwild (no fake '###' headers), ('</think>',) for the sequential baseline."""
    suppress_eos: bool | None = None
    """Workers never emit end-of-sequence (as in the paper); False: a worker stops at EOS;
    None = True for Hogwild, False for the sequential baseline (it ends when it is done)."""
    finisher: bool = True
    """Run the finisher at a budget snapshot that has no final answer yet."""
    finisher_max_tokens: int = 16
    """Greedy tokens the finisher may write (16 for short math answers, ~1024 for code)."""
    step_headers: bool = True
    """False: only a worker's first step opens with its header, so its workspace reads as one
    continuous text (layouts that do not merge steps, i.e. contiguous, only)."""
    loop_guard: str = "off"
    """Step-level loop guard (`plait.hogwild.loopguard`): 'off' (measure the duplicate-step rate
    only), 'cut' (a step repeating earlier steps is cut and rewritten with its tokens penalised)
    or 'penalise' (a duplicate step stays; its tokens are penalised in the worker's next step)."""
    loop_ngram: int = 3
    """Word n-gram length for the overlap."""
    loop_threshold: float = 0.5
    """Overlap (fraction of a step's n-grams seen before) at which a step is a duplicate."""
    loop_penalty: float = 4.0
    """Logit penalty for the tokens of a cut or duplicate step."""
    step_capacity: int = 0
    """Token capacity of a step segment; 0 -> max(budgets) + 64."""
    seed: int | None = 0
    """Base seed of the workers' samplers (None = 0)."""

    resolved_names: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        self._check_kinds()
        _check_int("workers", self.workers, 1, "use workers=2 for two workers")
        if self.sequential and self.workers != 1:
            raise ValueError(
                "sequential=True is the one-worker baseline: set workers=1 (or sequential=False)"
            )
        names = tuple(self.names) or default_names(self.workers)
        if len(names) < self.workers:
            raise ValueError(
                f"{self.workers} workers need {self.workers} names, got {len(names)}: pass names=(...) "
                "with one name per worker (or leave names empty for generated ones)"
            )
        if len(set(names[: self.workers])) != self.workers:
            raise ValueError(f"worker names must be distinct, got {names[: self.workers]}")
        self.resolved_names = tuple(names[: self.workers])
        budgets = tuple(self.budgets)
        if not budgets:
            raise ValueError("budgets must not be empty; e.g. budgets=(256, 512)")
        for b in budgets:
            _check_int(
                "each budget", b, 1, "budgets are numbers of forward passes, e.g. (256, 512)"
            )
            if b > MAX_TOKENS:
                raise ValueError(f"each budget must be <= {MAX_TOKENS} forward passes (no model's "
                                 f"context holds more), got {b}")  # fmt: skip
        self.budgets = tuple(sorted(set(budgets)))
        if self.seed is not None:
            _check_int("seed", self.seed, None, "pass an integer seed or None")
        self._check_text_options()
        if self.interjection_every < 0:
            raise ValueError("interjection_every must be >= 0 (0 disables the interjection)")
        if self.interjection_policy not in ("global", "per_worker", "random_worker"):
            raise ValueError(
                f"interjection_policy must be 'global', 'per_worker' or 'random_worker', got {self.interjection_policy!r}"
            )
        if self.task not in ("math", "code"):
            raise ValueError(f"task must be 'math' or 'code', got {self.task!r}")
        _check_int("finisher_max_tokens", self.finisher_max_tokens, 1, "or set finisher=False")
        if self.finisher_max_tokens > MAX_TOKENS:
            raise ValueError(f"finisher_max_tokens must be <= {MAX_TOKENS}, got "
                             f"{self.finisher_max_tokens}")  # fmt: skip
        if self.step_capacity < 0:
            raise ValueError("step_capacity must be >= 0 (0 = automatic)")
        if isinstance(self.layout, str):
            from plait.hogwild.layouts import LAYOUTS

            if self.layout not in LAYOUTS:
                raise ValueError(
                    f"unknown layout {self.layout!r}: use one of {sorted(LAYOUTS)} or pass a Layout object"
                )
        self._check_layout_options()

    def _check_kinds(self) -> None:
        """Types a wrong value would slip through silently (a string iterates as names)."""
        if isinstance(self.names, str) or not all(
            isinstance(n, str) and n.strip() for n in self.names
        ):
            raise TypeError(f"names must be a sequence of non-empty strings such as "
                            f"('Alice', 'Bob'), got {self.names!r}")  # fmt: skip
        for flag in ("instant", "sequential", "finisher", "collaboration_tips", "few_shot",
                     "step_headers"):  # fmt: skip
            v = getattr(self, flag, False)
            if not isinstance(v, bool):
                raise TypeError(f"{flag} must be True or False, got {v!r}")
        for name in ("step_capacity", "interjection_every"):
            _check_int(name, getattr(self, name), None, "pass a whole number")
        for num in ("loop_threshold", "loop_penalty"):
            v = getattr(self, num)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise TypeError(f"{num} must be a number, got {v!r}")

    def _check_text_options(self) -> None:
        from plait.hogwild.answering import ANSWER_POLICIES
        from plait.hogwild.loopguard import GUARD_MODES
        from plait.hogwild.variants import get_variant

        get_variant(self.prompt, self.sequential)
        if self.answer_policy not in ANSWER_POLICIES:
            raise ValueError(
                f"answer_policy must be one of {ANSWER_POLICIES}, got {self.answer_policy!r}"
            )
        if self.loop_guard not in GUARD_MODES:
            raise ValueError(f"loop_guard must be one of {GUARD_MODES}, got {self.loop_guard!r}")
        _check_int("loop_ngram", self.loop_ngram, 1, "e.g. loop_ngram=3")
        if not 0.0 < self.loop_threshold <= 1.0:
            raise ValueError(f"loop_threshold must be in (0, 1], got {self.loop_threshold!r}")
        if not 0 <= self.loop_penalty < float("inf"):  # also refuses NaN
            raise ValueError(
                f"loop_penalty must be a finite number >= 0, got {self.loop_penalty!r}"
            )

    def _check_layout_options(self) -> None:
        if self.step_headers or self.sequential:
            return
        from plait.hogwild.layouts import get_layout

        if get_layout(self.layout).merges_steps:
            raise ValueError(
                "step_headers=False needs a layout that does not merge steps (contiguous): merged "
                "steps need their header to say whose they are"
            )

    @property
    def suppressed_texts(self) -> tuple[str, ...]:
        if self.suppress is not None:
            return tuple(self.suppress)
        return ("</think>",) if self.sequential else ("#", "</think>")

    @property
    def eos_suppressed(self) -> bool:
        return (not self.sequential) if self.suppress_eos is None else self.suppress_eos

    @property
    def base_seed(self) -> int:
        return self.seed or 0

    @property
    def max_budget(self) -> int:
        return self.budgets[-1]

    @property
    def capacity(self) -> int:
        return self.step_capacity or self.max_budget + 64
