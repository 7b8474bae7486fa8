"""Tokenizer loading, end-of-sequence ids, and chat prompts.

plait uses transformers' fast tokenizers (with the model's chat template) for text <-> ids only;
nothing else of transformers is involved at run time. A chat prompt is rendered to text with the
template and then encoded without extra special tokens, so the template alone decides BOS.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plait.runtime.loading.errors import MissingModelFilesError

Messages = Sequence[dict[str, str]]

# Special tokens that end a turn in common chat templates; included as EOS when in the vocab.
_TURN_END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>", "</s>")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def load_tokenizer(directory: Path) -> Any:
    """The HF tokenizer saved in `directory`; MissingModelFilesError if there is none."""
    if not any((directory / f).is_file() for f in _TOKENIZER_FILES):
        raise MissingModelFilesError(
            f"no tokenizer in {directory} (looked for {list(_TOKENIZER_FILES)}); copy the "
            "tokenizer files of this model next to its config.json"
        )
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError) as exc:
        raise MissingModelFilesError(
            f"cannot load the tokenizer in {directory}: {exc}; re-download the tokenizer files"
        ) from exc


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def eos_token_ids(tokenizer: Any, hf_config: Any, directory: Path | None = None) -> tuple[int, ...]:
    """Every id that ends generation: config, generation_config.json, tokenizer and turn ends."""
    ids = set(_ids(getattr(hf_config, "eos_token_id", None)))
    gen = directory / "generation_config.json" if directory is not None else None
    if gen is not None and gen.is_file():
        with contextlib.suppress(OSError, ValueError, TypeError):  # a broken file adds nothing
            ids.update(_ids(json.loads(gen.read_text()).get("eos_token_id")))
    ids.update(_ids(getattr(tokenizer, "eos_token_id", None)))
    specials = tokenizer.get_added_vocab()  # only special tokens: "</s>" may be plain text
    ids.update(specials[t] for t in _TURN_END_TOKENS if t in specials)
    return tuple(sorted(ids))


def as_messages(prompt: str | Messages) -> list[dict[str, str]]:
    """A plain string becomes one user message; messages are checked and copied."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("empty prompt: pass some text (or a non-empty list of messages)")
        return [{"role": "user", "content": prompt}]
    messages = [dict(m) for m in prompt]
    if not messages:
        raise ValueError("empty prompt: the list of messages is empty; add a user message")
    for m in messages:
        if "role" not in m or "content" not in m:
            raise ValueError(f"each message needs 'role' and 'content' keys, got {sorted(m)}")
    return messages


def chat_prompt_ids(
    tokenizer: Any, prompt: str | Messages, add_generation_prompt: bool = True
) -> list[int]:
    """Token ids of `prompt` rendered with the tokenizer's chat template.

    A tokenizer without a chat template encodes the text of the messages joined by newlines
    (with its default special tokens), so base models still work.
    """
    messages = as_messages(prompt)
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    text = "\n".join(m["content"] for m in messages)
    return list(tokenizer(text)["input_ids"])
