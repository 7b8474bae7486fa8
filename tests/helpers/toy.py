"""A toy character tokenizer and tiny random models over its vocabulary (Hogwild and eval tests).

The tokenizer matches single printable characters plus a few multi-character pieces that the
Hogwild prompt rules care about ("\\n\\n", "**", "\\boxed{"...); the models come from
`tests.helpers.tiny` (random transformers weights converted with `DecoderLM.from_hf`).
"""

from __future__ import annotations

import torch

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
