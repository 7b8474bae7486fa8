"""Render / encode_pieces: the tokenisation round trip of the orchestrator's segments."""

from __future__ import annotations

import random

import pytest

from plait.threads.format.parser import parse
from plait.threads.format.render import BlockSpec, describe, encode_pieces, render
from plait.threads.format.validate import validate
from tests.helpers.threads import random_parts


@pytest.mark.parametrize("seed", range(8))
def test_round_trip_bpe(bpe_fmt, seed):
    rng = random.Random(seed)
    parts = random_parts(rng, blocks=rng.randint(0, 3))
    ids, gen = encode_pieces(bpe_fmt, parts)
    assert bpe_fmt.encode(render(parts)) == ids  # full-text tokenisation = orchestrator segments
    assert bpe_fmt.decode(ids) == render(parts)
    assert len(gen) == len(ids)
    assert validate(ids, bpe_fmt) == []


def test_round_trip_char(char_fmt):
    parts = ["a\n", BlockSpec(outlines=["p", "q"], threads=["x", "y"]), "\nz"]
    ids, gen = encode_pieces(char_fmt, parts)
    assert char_fmt.encode(render(parts)) == ids
    # inserted: "\n" before the first thread, 2 headers, the join newline
    inserted = [i for i, g in zip(ids, gen) if not g]
    assert char_fmt.decode(inserted) == "\n<Thread>\n1:<Thread>\n2:\n"


def test_canonical_text(char_fmt):
    text = render([BlockSpec(outlines=["p"], threads=["body"])])
    assert text == (
        "<Parallel>\n<Outlines>\n<Outline>1: p</Outline>\n</Outlines>\n"
        "<Thread>\n1: body\n</Thread>\n</Parallel>"
    )


def test_block_spec_rejects_mismatch():
    with pytest.raises(ValueError, match="as many threads as outlines"):
        BlockSpec(outlines=["a"], threads=["x", "y"])


def test_describe(char_fmt):
    ids, _ = encode_pieces(char_fmt, ["hi\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"])])
    text = describe(parse(ids, char_fmt), char_fmt)
    assert "thread 2 (7 tok)" in text and text.startswith("prompt: 0 tokens")


@pytest.mark.model
def test_round_trip_smollm2_tokenizer(smol_tokenizer):
    """The real BPE of the bundled SmolLM2 (GGUF) with the tags added."""
    import copy

    from plait.threads.format.codec import ThreadFormat

    fmt = ThreadFormat.from_tokenizer(copy.deepcopy(smol_tokenizer))
    for seed in range(5):
        parts = random_parts(random.Random(seed), blocks=2)
        ids, _ = encode_pieces(fmt, parts)
        assert fmt.encode(render(parts)) == ids
        assert validate(ids, fmt) == []
