"""Lenient reading: each variant other pipelines write is rejected by the strict validator with a
positioned error, and normalised by the lenient reader to the canonical trajectory."""

from __future__ import annotations

import random

import pytest

from plait.threads.format.codec import ThreadFormat
from plait.threads.format.lenient import normalize
from plait.threads.format.parser import parse
from plait.threads.format.render import BlockSpec, render
from plait.threads.format.validate import validate
from tests.helpers.threads import random_parts

CANON = render(["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\nt"])
CONCLUDED = render(["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\nso x yy\nt"])

# name -> (variant text, canonical text, where the strict error is (a marker in the variant),
#          the strict error code, the lenient fix code)
VARIANTS = {
    "newline-between-threads": (
        CANON.replace("</Thread><Thread>", "</Thread>\n<Thread>"), CANON,
        ("</Thread>", 1), "whitespace", "glue",
    ),
    "thread-without-newlines": (
        CANON.replace("<Thread>\n", "<Thread>").replace("\n</Thread>", "</Thread>"), CANON,
        ("<Thread>", 1), "thread-format", "thread-format",
    ),
    "number-without-space": (
        CANON.replace("1: ", "1:").replace("2: ", "2:"), CANON,
        ("<Outline>", 1), "outline-format", "outline-format",
    ),
    "blank-line-after-outlines": (
        CANON.replace("</Outlines>\n", "</Outlines>\n\n"), CANON,
        ("</Outlines>", 1), "whitespace", "glue",
    ),
    "parallel-outlines-touching": (
        CANON.replace("<Parallel>\n<Outlines>", "<Parallel><Outlines>"), CANON,
        ("<Parallel>", 1), "whitespace", "glue",
    ),
    "legacy-conclusion": (
        CANON.replace("</Thread>\n</Parallel>\nt",
                      "</Thread>\n<Conclusion>\nso x yy\n</Conclusion>\n</Parallel>\nt"),
        CONCLUDED, ("</Thread>\n", 1), "unclosed-block", "conclusion",
    ),
}  # fmt: skip


def _pos(fmt: ThreadFormat, text: str, marker: tuple[str, int]) -> int:
    """Token index just after the marker's (last) occurrence in `text` (prompt "Q" first)."""
    needle, skip = marker
    i = text.index(needle) + len(needle)
    for _ in range(skip - 1):
        i = text.index(needle, i) + len(needle)
    return len(fmt.encode("Q" + text[:i]))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_strict_rejects_lenient_normalises(char_fmt, name):
    variant, canonical, marker, strict_code, fix_code = VARIANTS[name]
    f = char_fmt
    tokens = f.encode("Q" + variant)
    errors = validate(tokens, f, prompt_len=1)
    assert errors, f"strict accepted {name}"
    assert (errors[0].pos, errors[0].code) == (_pos(f, variant, marker), strict_code)
    norm = normalize(tokens, f, prompt_len=1)
    assert fix_code in {x.code for x in norm.fixes} and norm.prompt_len == 1
    assert validate(norm.tokens, f, prompt_len=1) == []
    assert norm.tokens == f.encode("Q" + canonical)  # exactly the canonical trajectory
    want, got = parse(f.encode("Q" + canonical), f, prompt_len=1), parse(tokens, f, prompt_len=1,
                                                                         lenient=True)  # fmt: skip
    bodies = [[f.decode(got.tokens[slice(*t.body)]) for t in b.threads] for b in got.blocks]
    assert bodies == [[f.decode(want.tokens[slice(*t.body)]) for t in b.threads]
                      for b in want.blocks] == [["\n1: x\n", "\n2: yy\n"]]  # fmt: skip


def test_all_variants_at_once_with_a_real_bpe(bpe_tokenizer):
    from plait.threads.format.tags import add_thread_tokens

    add_thread_tokens(bpe_tokenizer, legacy=True)  # <Conclusion> as one special token
    f = ThreadFormat.from_tokenizer(bpe_tokenizer)
    text = CANON
    for variant, *_ in VARIANTS.values():  # apply each edit on top of the others
        text = text if variant == CANON else _merge(text, variant)
    assert validate(f.encode(text), f) != []
    norm = normalize(f.encode(text), f)
    assert validate(norm.tokens, f) == [] and norm.tokens == f.encode(CONCLUDED)


def _merge(text: str, variant: str) -> str:
    """Apply the edit that turned CANON into `variant` to `text` as well."""
    for old, new in [("</Thread><Thread>", "</Thread>\n<Thread>"), ("<Thread>\n", "<Thread>"),
                     ("\n</Thread>", "</Thread>"), ("1: ", "1:"), ("2: ", "2:"),
                     ("</Outlines>\n", "</Outlines>\n\n"), ("<Parallel>\n<Outlines>", "<Parallel><Outlines>"),
                     ("</Thread>\n</Parallel>\nt", "</Thread>\n<Conclusion>\nso x yy\n</Conclusion>\n</Parallel>\nt")]:  # fmt: skip
        if new in variant and old in text:
            text = text.replace(old, new)
    return text


def test_canonical_trajectories_come_back_unchanged(bpe_fmt):
    rng = random.Random(3)
    for _ in range(20):
        tokens = bpe_fmt.encode("prompt\n" + render(random_parts(rng, rng.randint(0, 3))))
        tokens += list(bpe_fmt.eos_ids)
        norm = normalize(tokens, bpe_fmt, prompt_len=2)
        assert norm.tokens == tokens and norm.fixes == []


def test_what_lenient_leaves_to_the_validator(char_fmt):
    f = char_fmt
    gap = CANON.replace("<Outline>2:", "<Outline>5:").replace("\n2:", "\n5:")
    norm = normalize(f.encode(gap), f)
    assert [e.code for e in validate(norm.tokens, f)] == ["numbering-gap"]
    text_in_glue = CANON.replace("<Parallel>\n", "<Parallel>\nhmm\n")
    norm = normalize(f.encode(text_in_glue), f)
    assert norm.fixes == [] and validate(norm.tokens, f)[0].code == "whitespace"
    with pytest.raises(ValueError, match="prompt_len"):
        normalize([1, 2], f, prompt_len=3)
