"""Units extraction on a hand-written trajectory."""

from __future__ import annotations

import pytest

from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.training.units import extract_units, structural_inserted


def test_hand_example(char_fmt):
    f = char_fmt
    prompt = f.encode("P")
    ids, gen = encode_pieces(f, ["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\nt"])
    toks = prompt + ids
    units = extract_units(toks, f, prompt_len=1)
    assert [u.kind for u in units] == ["full", "seq", "thread", "thread", "seq"]
    full, seq0, t1, t2, seq1 = units
    assert full.context == prompt and full.completion == ids and all(full.generated)
    outl = (
        "s\n<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: b</Outline>\n</Outlines>"
    )
    assert f.decode(seq0.completion) == outl and all(seq0.generated)
    assert f.decode(t1.context) == "P" + outl + "\n<Thread>\n1:"
    assert f.decode(t2.context) == "P" + outl + "\n<Thread>\n2:"  # sibling: never sees thread 1
    assert f.decode(t1.completion) == " x\n</Thread>" and all(t1.generated)
    assert f.decode(t2.completion) == " yy\n</Thread>" and (t1.thread, t2.thread) == ("1", "2")
    # the continuation sees the joined block and starts with the model's </Parallel>
    assert f.decode(seq1.context).endswith("2: yy\n</Thread>\n")
    assert f.decode(seq1.completion) == "</Parallel>\nt"
    # without header loss the full unit marks exactly the inserted tokens: "\n", headers, join
    old = extract_units(toks, f, prompt_len=1, header_loss=False)[0]
    assert old.generated == gen
    assert f.decode([t for t, g in zip(old.completion, old.generated) if not g]) == (
        "\n<Thread>\n1:<Thread>\n2:\n"
    )
    # thread 1's context + completion is a prefix of the trajectory (prefix-cache friendly)
    assert toks[: len(t1.context) + len(t1.completion)] == t1.context + t1.completion


def test_structural_mask_matches_orchestrator_mask(bpe_fmt):
    f = bpe_fmt
    ids, gen = encode_pieces(
        f, ["the sum\n", BlockSpec(outlines=["a b", "c"], threads=["x y", "z"]), "\nso"]
    )
    assert structural_inserted(ids, f, 0) == [not g for g in gen]


def test_no_blocks(char_fmt):
    units = extract_units(char_fmt.encode("Pabc"), char_fmt, prompt_len=1)
    assert [u.kind for u in units] == ["full", "seq"] and units[0].completion == units[1].completion


def test_bad_args(char_fmt):
    with pytest.raises(ValueError, match="prompt_len"):
        extract_units([1, 2], char_fmt, prompt_len=0)
    with pytest.raises(ValueError, match="inserted"):
        extract_units([1, 2, 3], char_fmt, prompt_len=1, inserted=[False])
