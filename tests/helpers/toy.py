"""A toy character tokenizer and tiny random models over its vocabulary (Hogwild and eval tests).

The tokenizer matches single printable characters plus a few multi-character pieces that the
Hogwild prompt rules care about ("\\n\\n", "**", "\\boxed{"...); the models come from
`tests.helpers.tiny` (random transformers weights converted with `DecoderLM.from_hf`);
`Hogwild` runs one configuration's problems through plait.hogwild's public functions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from plait.hogwild import HogwildConfig, HogwildProblem, solve, solve_batch, stream
from plait.hogwild.events import Event, ProblemResult
from plait.runtime.engine import Engine, EngineConfig
from tests.helpers.tiny import tiny_model

SPECIALS = ["<pad>", "<eos>"]
MULTI = ["\n\n", ".\n\n", "?\n\n", "**", "\\boxed{", "```"]
CHARS = [chr(c) for c in range(32, 127)] + ["\n"]


class ToyTokenizer:
    """Greedy longest-match tokenizer over single characters plus a few multi-character pieces."""

    chat_template = None
    eos_token_id = 1

    def __init__(self) -> None:
        base = SPECIALS + MULTI + CHARS
        self.vocab = base + [
            f"<u{i}>" for i in range(len(base), VOCAB)
        ]  # fill the model's vocabulary
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.longest = max(len(t) for t in MULTI)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        out, i = [], 0
        while i < len(text):
            for n in range(self.longest, 0, -1):
                piece = text[i : i + n]
                if len(piece) == n and piece in self.index:
                    out.append(self.index[piece])
                    i += n
                    break
            else:
                out.append(self.index["?"])
                i += 1
        return out

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join("" if (skip_special_tokens and i < 2) else self.vocab[i] for i in ids)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.vocab[i] for i in ids]


VOCAB = 128


def toy_model(family: str, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A 2-layer random plait model of the given family over the toy vocabulary."""
    return tiny_model(family, seed, dtype, vocab=VOCAB, intermediate=128, max_position=4096, eos=1)


def always_end(step: str, piece: str) -> bool:
    """A Hogwild step rule for toy models: a step ends at a blank line or after 12 characters."""
    return "\n\n" in piece or len(step) > 12


class Hogwild:
    """One configuration's problems through plait.hogwild's public functions (`solve`,
    `solve_batch`, `stream`), with the options every problem gets (`choose`, `step_rule`,
    `on_pass`, `sampling`: change them in `options` between runs). `engine` is None (each run
    on a private engine, as users run) until `use_engine()` gives the runs one shared engine
    whose runner and store tests may spy on."""

    def __init__(self, model, tokenizer, config: HogwildConfig, **options: Any) -> None:  # noqa: ANN001
        self.model, self.tokenizer, self.config, self.options = model, tokenizer, config, options
        self.engine: Engine | None = None

    def use_engine(self, kv_budget_tokens: int = 1 << 15, max_rows: int = 64) -> Engine:
        config = EngineConfig(kv_budget_tokens=kv_budget_tokens, max_rows=max_rows)
        self.engine = Engine(self.model, config=config)
        return self.engine

    def problem(self, text: str, index: int = 0) -> HogwildProblem:
        return HogwildProblem(self.model, self.tokenizer, self.config, text, index, **self.options)

    def prompt_ids(self, text: str) -> list[int]:
        p = self.problem(text)
        return p.encode(p.prompt_text)

    def stream(self, problems: str | list[str]) -> Iterator[Event]:
        return stream(self.model, self.tokenizer, problems, self.config, engine=self.engine,
                      **self.options)  # fmt: skip

    def solve_batch(self, problems: list[str]) -> list[ProblemResult]:
        return solve_batch(self.model, self.tokenizer, problems, self.config, engine=self.engine,
                           **self.options)  # fmt: skip

    def solve(self, problem: str) -> ProblemResult:
        return solve(self.model, self.tokenizer, problem, self.config, engine=self.engine,
                     **self.options)  # fmt: skip
