"""Strict validator: each error class, and the position it points at."""

from __future__ import annotations

import pytest

from plait.threads.format.render import BlockSpec, render
from plait.threads.format.validate import check, explain, validate

GOOD = render(["go\n", BlockSpec(outlines=["a", "b"], threads=["x", "y"]), "\nend"])


def codes(fmt, text, **kw):
    return [e.code for e in validate(fmt.encode(text), fmt, **kw)]


def test_good(char_fmt):
    assert codes(char_fmt, GOOD) == []
    check(char_fmt.encode(GOOD), char_fmt)


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("<Outline>2:", "<Outline>3:", "numbering-gap"),
        ("<Outline>2:", "<Outline>1:", "numbering-duplicate"),
        ("\n2: y", "\n3: y", "thread-number"),
        ("</Thread><Thread>", "</Thread>\n<Thread>", "whitespace"),
        ("1: x\n</Thread>", "1: x</Thread>", "whitespace"),
        ("</Outlines>\n<Thread>", "</Outlines><Thread>", "whitespace"),
        ("<Thread>\n2: y\n</Thread>", "", "count-mismatch"),
        ("1: x", "1: x <Outline>", "tag-inside"),
        ("1: x", "1: x <Parallel>", "nested"),
        ("\n</Parallel>", "", "unclosed-block"),
        ("</Outline>\n</Outlines>", "</Outline>\n", "unclosed-outlines"),
        ("<Outline>1: a", "<Outline>first a", "outline-format"),
        ("\n1: x", "\nx", "thread-format"),
        ("go\n", "go</Thread>\n", "stray-tag"),
    ],
)
def test_errors(char_fmt, old, new, code):
    assert old in GOOD
    got = codes(char_fmt, GOOD.replace(old, new, 1))
    assert code in got, got


def test_position_points_at_offender(char_fmt):
    f = char_fmt
    text = GOOD.replace("<Outline>2:", "<Outline>3:")
    ids = f.encode(text)
    (err,) = [e for e in validate(ids, f) if e.code == "numbering-gap"]
    assert f.decode(ids[err.pos : err.pos + 3]) == "<Outline>3:"
    assert ">>" in explain(ids, f, err)


def test_limits(char_fmt):
    assert "too-many-outlines" in codes(char_fmt, GOOD, max_outlines=1)
    assert "too-few-threads" in codes(char_fmt, GOOD, min_threads=3)


def test_check_raises_with_fix(char_fmt):
    with pytest.raises(ValueError, match="renumber"):
        check(char_fmt.encode(GOOD.replace("<Outline>2:", "<Outline>1:")), char_fmt)


def test_prompt_not_validated(char_fmt):
    prompt = char_fmt.encode("<Thread>")  # stray tag in the prompt is not the response's fault
    assert validate(prompt + char_fmt.encode(GOOD), char_fmt, prompt_len=len(prompt)) == []


def test_fuzz_never_crashes(char_fmt):
    """Random token soups: parse, validate, units and metrics must not raise; valid renders stay valid."""
    import random

    from plait.threads.format.metrics import trajectory_stats
    from plait.threads.format.parser import parse
    from plait.threads.training.units import extract_units

    rng = random.Random(3)
    tags = sorted(char_fmt.tags.all())
    for _ in range(300):
        toks = [65] + [rng.choice(tags) if rng.random() < 0.3 else rng.choice([10, 32, 49, 50, 58, 97, 264])
                       for _ in range(rng.randint(0, 50))]  # fmt: skip
        validate(toks, char_fmt, prompt_len=1)
        units = extract_units(toks, char_fmt, prompt_len=1)
        assert units == [] or units[0].completion == toks[1:]
        for u in units:
            assert u.context[: len(toks[:1])] == toks[:1]
        trajectory_stats(parse(toks, char_fmt, prompt_len=1))
