"""Property tests: the reader, validator, normaliser, units and trie packer on arbitrary input.

Whatever they are given (random bytes as a file, random tag soups, ids outside the vocabulary),
they return a result or raise a user error (a `ValueError` / `PlaitError` that the CLI prints as
one line); never any other exception.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plait.errors import PlaitError
from plait.threads.data.records import read_records
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.lenient import normalize
from plait.threads.format.metrics import trajectory_stats
from plait.threads.format.parser import parse
from plait.threads.format.validate import validate
from plait.threads.training.packing import pack_rows
from plait.threads.training.trie import UnitTokens, build_trie
from plait.threads.training.units import extract_units

FMT = ThreadFormat.char_level()
TAGS = sorted(FMT.tags.all())
SOUP = st.one_of(
    st.sampled_from(TAGS),  # the eight tags
    st.sampled_from([10, 32, 58, 49, 50, 51, 97, 98]),  # "\n", " ", ":", "1".."3", "a", "b"
    st.sampled_from(list(FMT.eos_ids)),
    st.integers(0, 300),  # anything, some outside the vocabulary of 265 ids
)
USER_ERRORS = (ValueError, PlaitError)
RUNS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@RUNS
@given(st.lists(SOUP, max_size=80), st.integers(0, 5))
def test_validator_and_normaliser_on_tag_soups(tokens, prompt_len):
    prompt_len = min(prompt_len, len(tokens))
    errors = validate(tokens, FMT, prompt_len=prompt_len)
    assert all(0 <= e.pos <= len(tokens) for e in errors)
    try:
        norm = normalize(tokens, FMT, prompt_len=prompt_len)
    except USER_ERRORS:
        assert FMT.out_of_vocabulary(tokens) is not None
        return
    assert norm.tokens[:prompt_len] == tokens[:prompt_len]
    assert normalize(norm.tokens, FMT, prompt_len=prompt_len).tokens == norm.tokens  # idempotent
    if not errors:
        assert norm.tokens == tokens  # a valid trajectory comes back unchanged
    trajectory_stats(parse(norm.tokens, FMT, prompt_len=prompt_len))


@RUNS
@given(st.lists(SOUP, min_size=1, max_size=80), st.integers(1, 5), st.integers(1, 200))
def test_units_and_trie_packer_on_tag_soups(tokens, prompt_len, row_length):
    prompt_len = min(prompt_len, len(tokens))
    try:
        units = extract_units(tokens, FMT, prompt_len=prompt_len)
        rows, report = pack_rows([units], row_length)
    except USER_ERRORS:
        return
    if rows:
        assert all(r.length == row_length and r.used <= row_length for r in rows)
    else:
        assert report.dropped_trajectories == [0]


@RUNS
@given(st.lists(st.tuples(st.lists(st.integers(0, 40), max_size=12),
                          st.lists(st.integers(0, 40), max_size=12),
                          st.lists(st.booleans(), max_size=12)), max_size=6),
       st.one_of(st.none(), st.integers(-2, 60)))  # fmt: skip
def test_trie_packer_on_random_units(raw, capacity):
    try:
        units = [UnitTokens(context=c, completion=x, trained=t[: len(x)] + [True] * (len(x) - len(t)))
                 for c, x, t in raw]  # fmt: skip
        flat = build_trie(units, capacity=capacity)
    except USER_ERRORS:
        return
    assert len(flat.kept) + len(flat.dropped) == len(units)
    for i, p in enumerate(flat.parent):
        assert p < i and flat.depth[i] == (0 if p < 0 else flat.depth[p] + 1)
        assert i <= flat.exit[i] and (p < 0 or flat.exit[i] <= flat.exit[p])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("props") / "t.jsonl"


@RUNS
@given(st.binary(max_size=200))
def test_reader_on_random_bytes(scratch, data):
    scratch.write_bytes(data)
    try:
        recs = read_records(scratch, FMT, check_vocab=False)
    except USER_ERRORS:
        return
    for r in recs:
        validate(r.tokens, FMT, prompt_len=r.prompt_len)


@RUNS
@given(st.lists(st.sampled_from(['{', '}', '[', ']', '"', ':', ',', '1', '-', ' ', '\n', '1.5',
                                  'tokens', 'prompt_len', 'inserted', 'response', 'true', 'null',
                                  '"tokens"', '"prompt_len"', '"response"', '"prompt"', '0', '99999']),
                max_size=60).map("".join))  # fmt: skip
def test_reader_on_json_like_soup(scratch, text):
    scratch.write_text(text, encoding="utf-8")
    try:
        recs = read_records(scratch, FMT)
    except USER_ERRORS:
        return
    assert recs and all(0 <= r.prompt_len <= len(r.tokens) for r in recs)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 400),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.lists(st.integers(-3, 400), max_size=10),
    st.lists(st.booleans(), max_size=10),
)
KEYS = ["tokens", "prompt_len", "inserted", "response", "prompt", "problem", "correct",
        "stop_reason"]  # fmt: skip


@RUNS
@given(st.lists(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5), min_size=1, max_size=3))
def test_reader_on_records_with_random_fields(scratch, objs):
    import json

    scratch.write_text("".join(json.dumps(o) + "\n" for o in objs), encoding="utf-8")
    try:
        recs = read_records(scratch, FMT)
    except USER_ERRORS:
        return
    for r in recs:
        assert FMT.out_of_vocabulary(r.tokens) is None
        assert r.inserted is None or len(r.inserted) == len(r.tokens) - r.prompt_len
        extract_units(
            r.tokens, FMT, prompt_len=r.prompt_len, inserted=r.inserted
        ) if r.prompt_len else None
        trajectory_stats(parse(r.tokens, FMT, prompt_len=r.prompt_len), r.inserted)
