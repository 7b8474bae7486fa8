"""The prompt variants (plait's own wording): instructions and each worker's seeded first step.

A `PromptVariant` gives the instructions for workers named `names` and the forced opening of each
worker's first step. Hogwild variants (W >= 1, collaboration text):

- `full`: the paper-style system prompt (shared document, past steps, work in progress, rules);
- `short`: four sentences: who you are, you see each other, split and do not repeat, one `\\boxed{}`;
- `roles`: `short` plus role hints: the first worker computes, the others check its steps (and
  the seeds say so), since a small model copes better with one job than with planning;
- `short_after`, `roles_after`: the same with the problem first, then the instructions (the order
  that lifted the small model's sequential accuracy);
- `team_after`: the problem, then "you are one of W assistants solving this at the same time; you
  see the others' work above yours: use it, check it, do not copy it; solve step by step and end
  with 'The answer is N'" (for the contiguous layout without step headers: each worker writes one
  continuous solution, as the sequential baseline does, next to the others');

- `plain_after`: the sequential prompt (`answer_is_after`) plus, for W > 1, one sentence saying the
  others' work appears above; no step headers and no seed for the first worker (it starts as the
  sequential run does), a usual opening for the others ("Let's solve this step by step.", ...) so
  greedy workers differ. With W = 1 its prompt is exactly the sequential one. For the contiguous
  layout without step headers.

Sequential variants (the one-worker baseline, no collaboration text):

- `boxed`: "solve step by step, put the final answer in \\boxed{}", seeded "Let's solve this step
  by step." (the default before issue 14);
- `answer_is`: "solve step by step, end with 'The answer is N'" (the plain-transformers GSM8K
  prompt), no seed;
- `answer_is_after` (the default): the problem first, then "Solve step by step and end with 'The
  answer is N'." (the plain-transformers GSM8K prompt; best measured on the bundled model);
- `answer_boxed`: "solve step by step, end with 'The answer is \\boxed{N}'", no seed;
- `worked`: `answer_boxed` + "be brief" + two short worked examples (plait's own), no seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from plait.hogwild.paragraph import header

TIPS = """How to work well together:
1. Plan: agree early on who does what. If plans clash, follow {first}'s plan.
2. Split: take parts that nobody else is working on.
3. Cross-check: when the problem cannot be split, try a different method than the others.
4. Talk: ask short questions and point out mistakes you notice in the others' work.
5. Announce: say what you will do next before doing it.
6. React: if you find yourself repeating someone's work, stop and pick something else; if you are
   ahead, tell the others what to switch to.
7. Drop: stop a line of work, even mid-sentence, once it no longer helps.
Every few steps, ask yourself whether your current work adds something new."""

EXAMPLE = """<example>
Problem: a shop sells pens at 3 dollars and notebooks at 5 dollars. Tom buys 4 pens and 2
notebooks; Ann buys 2 pens and 3 notebooks. How much do they spend together?

### Past steps

**{a} [1]:** Hello, this is {a}. Let me suggest a plan: I compute what Tom spends and {b} computes Ann's total.

**{b} [1]:** Hello, this is {b}. Agreed, I take Ann.

**{a} [2]:** Tom pays 4*3 + 2*5 = 12 + 10 = 22 dollars.

**{b} [2]:** Ann pays 2*3 + 3*5 = 6 + 15 = 21 dollars.

**{a} [3]:** Together that is 22 + 21 = 43 dollars, so the answer is \\boxed{{43}}.
</example>"""


WORKED = """Example:
Question: A baker makes 4 trays of 12 rolls. He sells 30 rolls and gives away half of the rest. How many rolls does he have left?
Solution: He makes 4 * 12 = 48 rolls. After selling 30, he has 48 - 30 = 18 rolls. He gives away 18 / 2 = 9 rolls, so 18 - 9 = 9 rolls are left. The answer is \\boxed{9}.

Example:
Question: Mia earns $15 an hour and works 6 hours on each of 4 days. She spends a third of her earnings on books. How much money does she keep?
Solution: She works 6 * 4 = 24 hours. She earns 24 * 15 = 360 dollars. She spends 360 / 3 = 120 dollars on books, so she keeps 360 - 120 = 240 dollars. The answer is \\boxed{240}."""


def _team(names: tuple[str, ...]) -> str:
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]


def full_instructions(names: tuple[str, ...]) -> str:
    w, last = len(names), names[-1]
    return f"""# Solving a problem as a team
You are one of {w} assistants ({_team(names)}) who solve the same problem together, all writing at the same time. Each of you sees everything the others write, as they write it.

The shared document looks like this:
- "### Past steps" lists every finished step of every assistant, in the order they were finished. A step starts with "**Name [number]:**".
- "### Work in progress (others)" shows the steps the other assistants are writing right now. They are unfinished and keep growing while you write; each one stops at "<...>".
- "### Work in progress (own)" is where you write your current step.

Rules:
- Do not do work that someone else has done or is doing. Read the others' work in progress often and build on it.
- If you notice you are duplicating someone (for example "Hmm, {last} is already computing this"), stop and switch to a different part of the problem.
- Answer the others' questions and suggestions.
- Any one of you may write the final answer as \\boxed{{answer}}. Once written, it is final and cannot be changed, so only write it when the team is confident."""


def short_instructions(names: tuple[str, ...]) -> str:
    return (
        f"You are {_team(names)}, solving the problem below together. You see each other's "
        "steps as they are written. Do not repeat a step someone already wrote: build on it. "
        "Write short steps, one calculation each. When the result is known, write it as "
        "\\boxed{N}."
    )


def role_instructions(names: tuple[str, ...]) -> str:
    first, rest = names[0], names[1:]
    if not rest:
        return short_instructions(names)
    return short_instructions(names) + (
        f" Roles: {first} computes the solution step by step. {_team(rest)} "
        f"{'checks' if len(rest) == 1 else 'check'} {first}'s latest step: say 'Correct.' or "
        f"give the corrected number, and do not redo {first}'s work."
    )


def team_instructions(names: tuple[str, ...]) -> str:
    see = (
        " Each of you sees the other assistants' work above your own as it is written: use it, "
        "check it, do not copy it."
        if len(names) > 1
        else ""
    )
    return (
        f"You are one of {len(names)} assistants ({_team(names)}) solving this problem at the same "
        f"time.{see} Solve step by step and end with 'The answer is N'."
    )


ANSWER_IS_AFTER = "Solve step by step and end with 'The answer is N'."
OPENINGS = (
    "",
    "Let's solve this step by step.",
    "First, let's list what we know.",
    "Let's break this problem down.",
)


def plain_instructions(names: tuple[str, ...]) -> str:
    if len(names) == 1:
        return ANSWER_IS_AFTER
    return (
        f"{ANSWER_IS_AFTER} You are one of {len(names)} assistants solving it at the same time; "
        "the others' work appears above yours."
    )


def _opening(worker: int, name: str) -> str:
    return OPENINGS[worker % len(OPENINGS)]


def _with_extras(text: str, names: tuple[str, ...], tips: bool, few_shot: bool) -> str:
    if tips:
        text += "\n\n" + TIPS.format(first=names[0])
    if few_shot and len(names) > 1:
        text += "\n\nHere is a short example of good teamwork:\n" + EXAMPLE.format(
            a=names[0], b=names[1]
        )
    return text


def _greeting(worker: int, name: str) -> str:
    greeting = "Let me suggest a plan:" if worker == 0 else ""
    return header(name, 1) + f"Hello, this is {name}. {greeting}".rstrip()


def _role_seed(worker: int, name: str) -> str:
    return header(name, 1) + ("Let me compute." if worker == 0 else "I will check each step.")


@dataclass(frozen=True, slots=True)
class PromptVariant:
    name: str
    sequential: bool
    instructions: Callable[[tuple[str, ...]], str]
    seed: Callable[[int, str], str]
    """(worker index, name) -> the forced opening of its first step ("" = none: the model starts)."""
    closing: str = ""
    """A sentence after the instructions (Hogwild variants: what to do next)."""
    problem_first: bool = False
    """The problem comes before the instructions in the user message."""

    def text(self, names: tuple[str, ...], tips: bool = False, few_shot: bool = False) -> str:
        text = self.instructions(names)
        if not self.sequential:
            text = _with_extras(text, names, tips, few_shot)
        return text + (f"\n\n{self.closing}" if self.closing else "")


_CLOSING = (
    "Solve the following problem together, keep track of who does what, and talk to each other."
)
STEPWISE = "Solve the following math problem step by step."
VARIANTS: dict[str, PromptVariant] = {
    v.name: v
    for v in (
        PromptVariant("full", False, full_instructions, _greeting, _CLOSING),
        PromptVariant("short", False, short_instructions, lambda i, n: header(n, 1)),
        PromptVariant("roles", False, role_instructions, _role_seed),
        PromptVariant(
            "short_after", False, short_instructions, lambda i, n: header(n, 1), problem_first=True
        ),
        PromptVariant("roles_after", False, role_instructions, _role_seed, problem_first=True),
        PromptVariant(
            "team_after", False, team_instructions, lambda i, n: header(n, 1), problem_first=True
        ),
        PromptVariant("plain_after", False, plain_instructions, _opening, problem_first=True),
        PromptVariant(
            "boxed",
            True,
            lambda names: (
                "Solve the following problem step by step. Put the final answer in \\boxed{}."
            ),
            lambda i, n: "Let's solve this step by step.",
        ),
        PromptVariant(
            "answer_is",
            True,
            lambda names: f"{STEPWISE} End with 'The answer is N', where N is the final number.",
            lambda i, n: "",
        ),
        PromptVariant(
            "answer_is_after",
            True,
            lambda names: ANSWER_IS_AFTER,
            lambda i, n: "",
            problem_first=True,
        ),
        PromptVariant(
            "worked",
            True,
            lambda names: (
                f"{STEPWISE} Be brief: one calculation per sentence. End with 'The "
                f"answer is \\boxed{{N}}', where N is the final number.\n\n{WORKED}"
            ),
            lambda i, n: "",
        ),
        PromptVariant(
            "answer_boxed",
            True,
            lambda names: (
                f"{STEPWISE} End with 'The answer is \\boxed{{N}}', where N is the final number."
            ),
            lambda i, n: "",
        ),
    )
}
DEFAULT_HOGWILD, DEFAULT_SEQUENTIAL = "full", "answer_is_after"


def get_variant(name: str, sequential: bool) -> PromptVariant:
    """The variant `name` ("" = the default for the mode); it must suit the mode."""
    name = name or (DEFAULT_SEQUENTIAL if sequential else DEFAULT_HOGWILD)
    v = VARIANTS.get(name)
    kinds = sorted(k for k, x in VARIANTS.items() if x.sequential == sequential)
    if v is None or v.sequential != sequential:
        mode = "sequential" if sequential else "Hogwild"
        raise ValueError(f"unknown {mode} prompt {name!r}: use one of {kinds}")
    return v
