"""Prompts for Hogwild! workers, in plait's own words, and per-model formatting.

The common prompt is: chat template applied to one user message (the system text inside it by
default, then the problem), an optional "<think>" (Qwen3 / Phi-4 style reasoning models), then
"### Past steps" which opens the shared history. Each worker's first step is seeded with its header
and a short greeting; worker 0's greeting invites it to propose a plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.hogwild.paragraph import header

PAST_STEPS = "\n### Past steps\n\n"
THINK_MODEL_TYPES = frozenset({"qwen3", "qwen3_moe", "phi3"})

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


def system_prompt(names: tuple[str, ...], tips: bool = False, few_shot: bool = False) -> str:
    """The collaboration instructions for workers named `names`."""
    w = len(names)
    others = ", ".join(names[:-1]) + f" and {names[-1]}" if w > 1 else names[0]
    text = f"""# Solving a problem as a team
You are one of {w} assistants ({others}) who solve the same problem together, all writing at the same time. Each of you sees everything the others write, as they write it.

The shared document looks like this:
- "### Past steps" lists every finished step of every assistant, in the order they were finished. A step starts with "**Name [number]:**".
- "### Work in progress (others)" shows the steps the other assistants are writing right now. They are unfinished and keep growing while you write; each one stops at "<...>".
- "### Work in progress (own)" is where you write your current step.

Rules:
- Do not do work that someone else has done or is doing. Read the others' work in progress often and build on it.
- If you notice you are duplicating someone (for example "Hmm, {names[-1] if w > 1 else names[0]} is already computing this"), stop and switch to a different part of the problem.
- Answer the others' questions and suggestions.
- Any one of you may write the final answer as \\boxed{{answer}}. Once written, it is final and cannot be changed, so only write it when the team is confident."""
    if tips:
        text += "\n\n" + TIPS.format(first=names[0])
    if few_shot and w > 1:
        text += "\n\nHere is a short example of good teamwork:\n" + EXAMPLE.format(
            a=names[0], b=names[1]
        )
    return (
        text
        + "\n\nSolve the following problem together, keep track of who does what, and talk to each other."
    )


SEQUENTIAL_INSTRUCTIONS = (
    "Solve the following problem step by step. Put the final answer in \\boxed{}."
)
SEQUENTIAL_SEED = "Let's solve this step by step."


@dataclass(slots=True, kw_only=True)
class PromptFormat:
    """How a model wants its prompt."""

    system_in_user: bool = True
    """Put the instructions inside the user message (the default, as in the paper)."""
    think: bool = False
    """Append "<think>\\n" after the generation prompt (Qwen3, Qwen3-MoE, Phi-4-reasoning)."""
    chat_template: bool = True
    """Use the tokenizer's chat template when it has one."""

    @classmethod
    def for_model_type(cls, model_type: str) -> PromptFormat:
        return cls(think=model_type in THINK_MODEL_TYPES)


def render_chat(tokenizer: Any, instructions: str, problem: str, fmt: PromptFormat) -> str:
    """Apply the chat template (or a plain fallback) to the instructions and the problem."""
    if fmt.system_in_user:
        messages = [{"role": "user", "content": f"{instructions}\n\n{problem}"}]
    else:
        messages = [
            {"role": "system", "content": instructions},
            {"role": "user", "content": problem},
        ]
    template = getattr(tokenizer, "chat_template", None)
    if fmt.chat_template and template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    else:
        text = "\n\n".join(m["content"] for m in messages) + "\n\n"
    return text + ("<think>\n" if fmt.think else "")


def common_prompt(
    tokenizer: Any,
    problem: str,
    names: tuple[str, ...],
    fmt: PromptFormat,
    *,
    sequential: bool = False,
    tips: bool = False,
    few_shot: bool = False,
    past_steps: bool = True,
    instructions: str = "",
) -> str:
    """The text that opens the shared history (`instructions` replaces the built-in text)."""
    if sequential:
        return render_chat(tokenizer, instructions or SEQUENTIAL_INSTRUCTIONS, problem, fmt)
    text = render_chat(
        tokenizer, instructions or system_prompt(names, tips, few_shot), problem, fmt
    )
    return text + (PAST_STEPS if past_steps else "\n")


def seed_step(worker: int, name: str, sequential: bool = False) -> str:
    """The forced opening of a worker's first step (header + greeting)."""
    if sequential:
        return SEQUENTIAL_SEED
    greeting = "Let me suggest a plan:" if worker == 0 else ""
    return header(name, 1) + f"Hello, this is {name}. {greeting}".rstrip()
