"""TextStream (windowed incremental decoding, stop strings) against decoding all ids at once."""

from __future__ import annotations

import random

import pytest

from plait.runtime.engine.detokenize import TextStream
from plait.runtime.loading.bundled import BUNDLED, bundled_status

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def tok():
    if not bundled_status(BUNDLED["smollm2-135m"]).installed:
        pytest.skip("smollm2-135m is not installed (make install)")
    from plait.runtime.loading.loader import load_model

    return load_model("smollm2-135m").tokenizer


TEXTS = [
    "Hello, world! The café serves crème brûlée for 5 € — naïve façade.",
    "数学很有趣。Let's count: 1, 2, 3...\n\n  indented    spaces\tand tabs 🙂🙃 done",
]


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_join_to_the_full_decode(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    rng = random.Random(1)
    ids = ids + [rng.randrange(tok.vocab_size) for _ in range(40)]
    stream = TextStream(tok)
    joined = "".join(stream.add(t) for t in ids) + stream.flush()
    assert joined == tok.decode(ids, skip_special_tokens=True)


def test_stop_string_cuts_and_holds_back(tok):
    ids = tok.encode("The answer is 42. END of story", add_special_tokens=False)
    stream = TextStream(tok, stop=("END",))
    shown = []
    for t in ids:
        shown.append(stream.add(t))
        if stream.matched:
            break
    assert stream.matched == "END"
    assert "".join(shown) + stream.flush() == "The answer is 42. "
    keep = TextStream(tok, stop=("42",), include_stop=True)
    out = ""
    for t in ids:
        out += keep.add(t)
        if keep.matched:
            break
    assert out + keep.flush() == "The answer is 42"
