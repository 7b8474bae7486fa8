"""Named settings for Hogwild! runs and their sequential baseline, chosen by model size.

A `Preset` holds `HogwildConfig` fields for the Hogwild workers, fields for the sequential
baseline, and the sampling temperature. `paper` is the paper's setup (full system prompt, greedy,
no loop guard); `small` is what measured best on the bundled Qwen2.5-Coder-0.5B (GSM8K, see
docs/hogwild.md for the table it comes from). `preset_for(config)` picks `small` for models under
3B parameters, `paper` otherwise; the CLI's `--preset auto` uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SMALL_MODEL_PARAMS = 3e9


@dataclass(frozen=True, slots=True)
class Preset:
    name: str
    hogwild: Mapping[str, Any] = field(default_factory=dict)
    """`HogwildConfig` fields for W-worker runs."""
    sequential: Mapping[str, Any] = field(default_factory=dict)
    """`HogwildConfig` fields for the one-worker sequential baseline."""
    temperature: float = 0.0
    top_p: float = 1.0
    note: str = ""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("paper", note="the paper's setup: full system prompt, greedy, no loop guard"),
        Preset(
            "small",
            hogwild={
                "prompt": "plain_after",
                "layout": "contiguous",
                "step_headers": False,
                "suppress": ("</think>",),
                "suppress_eos": False,
            },  # fmt: skip
            sequential={"prompt": "answer_is_after"},
            note="the best Hogwild variant measured on the bundled 0.5B model (GSM8K-50, "
            "docs/hogwild.md); it stays below the sequential run there",
        ),
    )
}


def fit_layout(fields: dict[str, Any], layout: str | None) -> None:
    """A layout the user chose that merges steps needs step headers: drop the preset's
    `step_headers=False` (made for the contiguous layout) instead of refusing the combination."""
    from plait.hogwild.layouts import LAYOUTS

    chosen = LAYOUTS.get(layout) if layout is not None else None
    if chosen is not None and chosen.merges_steps and not fields.get("step_headers", True):
        del fields["step_headers"]


def parameter_count(config: Any) -> float:
    """Approximate parameters of a decoder from its config (embeddings + layers)."""
    h, layers = config.hidden_size, config.num_layers
    inter = getattr(config, "intermediate_size", 4 * h)
    return config.vocab_size * h + layers * (4 * h * h + 3 * h * inter)


def preset_for(config: Any) -> Preset:
    """`small` for models under 3B parameters, `paper` otherwise."""
    return PRESETS["small" if parameter_count(config) < SMALL_MODEL_PARAMS else "paper"]


def get_preset(name: str, config: Any = None) -> Preset:
    """A preset by name; "auto" = `preset_for(config)`."""
    if name == "auto":
        if config is None:
            raise ValueError("preset 'auto' needs the model's config")
        return preset_for(config)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}: use 'auto' or one of {sorted(PRESETS)}")
    return PRESETS[name]
