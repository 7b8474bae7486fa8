"""Plain generation: errors, sampling determinism, streaming text."""

from __future__ import annotations

import pytest
import torch

from plait.runtime.engine.detokenize import TextStream
from plait.runtime.generate import generate_tokens
from plait.runtime.sampling import Sampler, SamplingParams, filter_logits, greedy_argmax
from tests.helpers.tiny import tiny_model


def test_generation_errors_name_the_fix():
    m = tiny_model("llama")
    with pytest.raises(ValueError, match="prompt is empty"):
        list(generate_tokens(m, [], 4))
    with pytest.raises(ValueError, match="max_new_tokens"):
        list(generate_tokens(m, [1], 0))
    with pytest.raises(ValueError, match="shorten the prompt"):
        list(generate_tokens(m, [1] * m.config.max_position, 4))


def test_stop_token_ends_generation():
    m = tiny_model("qwen2", seed=1)
    full = list(generate_tokens(m, [1, 2, 3], 12))
    stop = full[4]
    cut = list(generate_tokens(m, [1, 2, 3], 12, stop_ids=[stop]))
    assert cut == full[: full.index(stop) + 1]


def test_seeded_sampling_is_deterministic_and_per_stream():
    m = tiny_model("qwen3", seed=2)
    p = SamplingParams(temperature=1.0, top_k=20, top_p=0.9, seed=7)
    a = list(generate_tokens(m, [5, 6], 16, p))
    b = list(generate_tokens(m, [5, 6], 16, p))
    c = list(generate_tokens(m, [5, 6], 16, SamplingParams(temperature=1.0, seed=8)))
    assert a == b and a != c
    # a stream's draws do not depend on the other streams in the batch
    logits = torch.randn(3, 50)
    one = Sampler([SamplingParams(temperature=1.0, seed=3)])(logits[:1])
    three = Sampler(
        [
            SamplingParams(temperature=1.0, seed=3),
            SamplingParams(temperature=1.0, seed=4),
            SamplingParams(temperature=1.0, seed=5),
        ]
    )(logits)
    assert one[0] == three[0]


def test_filters_top_k_top_p_and_suppression():
    x = torch.tensor([0.0, 3.0, 2.0, 1.0, -1.0])
    assert torch.isinf(filter_logits(x, SamplingParams(temperature=1.0, top_k=2))).tolist() == [
        True,
        False,
        False,
        True,
        True,
    ]
    probs = torch.softmax(x, -1)  # top token holds ~0.64 of the mass
    kept = ~torch.isinf(filter_logits(x, SamplingParams(temperature=1.0, top_p=0.5)))
    assert kept.tolist() == [False, True, False, False, False] and probs[1] > 0.5
    kept = ~torch.isinf(filter_logits(x, SamplingParams(temperature=1.0, top_p=0.9)))
    assert kept.tolist() == [False, True, True, True, False]
    greedy = Sampler([SamplingParams(suppress_tokens=(1,))])(x[None])
    assert greedy.tolist() == [2]
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingParams(top_p=0)


def test_text_stream_waits_for_whole_characters():
    class Tok:
        table = {1: b"h", 2: b"\xc3", 3: b"\xa9", 4: b"!"}

        def decode(self, ids, skip_special_tokens=True):
            return b"".join(self.table[i] for i in ids).decode("utf-8", errors="replace")

    text = TextStream(Tok())
    assert [text.add(t) for t in [1, 2, 3, 4]] == ["h", "", "é", "!"]


@pytest.mark.parametrize("size", [1, 7, 1024, 3000, 151936])
@pytest.mark.parametrize("seed", range(4))
def test_greedy_argmax_equals_torch_argmax(size, seed):
    """First index of the maximum, as torch.argmax: ties (small integer logits), maxima in the
    tail past the last whole chunk, -inf (suppressed) entries, NaN (torch's rule)."""
    g = torch.Generator().manual_seed(seed * 1000 + size)
    for x in (
        torch.randn(size, generator=g),
        torch.randint(0, 3, (size,), generator=g).float(),  # many ties
        torch.randint(0, 3, (size,), generator=g)
        .float()
        .index_fill_(0, torch.tensor([0]), -torch.inf),
    ):
        assert greedy_argmax(x) == int(torch.argmax(x))
        x[-1] = x.max() + 1  # the maximum in the tail
        assert greedy_argmax(x) == int(torch.argmax(x))
        x[size // 2] = float("nan")
        assert greedy_argmax(x) == int(torch.argmax(x))
