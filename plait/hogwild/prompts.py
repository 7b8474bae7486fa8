"""Prompts for Hogwild! workers and the sequential baseline, and per-model formatting.

The common prompt is: chat template applied to one user message (the instructions of the chosen
prompt variant inside it by default, then the problem), an optional "<think>" (Qwen3 / Phi-4 style
reasoning models), then "### Past steps" which opens the shared history (Hogwild variants with a
merging layout). Each worker's first step is seeded as the variant says (the texts and variants:
`plait.hogwild.variants`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from plait.hogwild.variants import get_variant

PAST_STEPS = "\n### Past steps\n\n"
THINK_MODEL_TYPES = frozenset({"qwen3", "qwen3_moe", "phi3"})


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


def render_chat(
    tokenizer: Any, instructions: str, problem: str, fmt: PromptFormat, problem_first: bool = False
) -> str:
    """Apply the chat template (or a plain fallback) to the instructions and the problem."""
    if fmt.system_in_user:
        parts = (problem, instructions) if problem_first else (instructions, problem)
        messages = [{"role": "user", "content": "\n\n".join(parts)}]
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
    variant: str = "",
    tips: bool = False,
    few_shot: bool = False,
    past_steps: bool = True,
    instructions: str = "",
) -> str:
    """The text that opens the shared history (`instructions` replaces the variant's text)."""
    v = get_variant(variant, sequential)
    text = instructions or v.text(names, tips, few_shot)
    rendered = render_chat(tokenizer, text, problem, fmt, v.problem_first)
    if sequential:
        return rendered
    if past_steps:
        return rendered + PAST_STEPS
    # a seedless worker's text follows the assistant turn directly, as in the sequential prompt
    return rendered + ("\n" if all(v.seed(i, n) for i, n in enumerate(names)) else "")


def seed_step(worker: int, name: str, sequential: bool = False, variant: str = "") -> str:
    """The forced opening of a worker's first step ("" = none: the model starts the step)."""
    return get_variant(variant, sequential).seed(worker, name)
