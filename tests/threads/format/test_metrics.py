"""Metrics: hand-computed cases, properties, the one-pass twin, mean-of-ratios speedup."""

from __future__ import annotations

import random

import pytest

from plait.threads.format.metrics import (
    Rollout,
    activation_ratio,
    critical_path_stream,
    speedup_vs_baseline,
    trajectory_stats,
)
from plait.threads.format.parser import parse
from plait.threads.format.render import BlockSpec, encode_pieces


def test_no_blocks_latency_equals_total(char_fmt):
    ids = char_fmt.encode("Pjust thinking")
    s = trajectory_stats(parse(ids, char_fmt, prompt_len=1))
    assert s.critical_path == s.total_tokens == 13
    assert s.acceleration == 0.0 and s.self_parallelism == 1.0 and s.parallel_ratio == 0.0


def test_one_block_10_and_30(char_fmt):
    f = char_fmt
    # thread bodies are "\n1: " + x + "\n": 5 + len(x) tokens -> bodies of 10 and 30 tokens
    ids, gen = encode_pieces(
        f, ["ab\n", BlockSpec(outlines=["p", "q"], threads=["x" * 5, "y" * 25]), "\nend"]
    )
    tree = parse(ids, f)
    b = tree.blocks[0]
    assert [t.body_len for t in b.threads] == [10, 30]
    seq = 3 + len("\nend")  # outside the block
    wrappers = 4  # <Thread> </Thread> twice
    outlines = len(
        f.encode(
            "<Parallel>\n<Outlines>\n<Outline>1: p</Outline>\n<Outline>2: q</Outline>\n</Outlines>\n"
        )
    )
    tail = len(f.encode("\n</Parallel>"))
    s = trajectory_stats(tree, inserted=[not g for g in gen])
    assert s.critical_path == seq + outlines + wrappers + tail + 30
    assert s.total_tokens == len(ids) and s.total_tokens - s.critical_path == 10
    assert s.parallel_tokens == len(b) and s.blocks == 1 and s.threads == 2
    # parallel ratio: plait counts <Parallel> and </Parallel>, the release does not
    assert s.parallel_ratio == s.parallel_ratio_as("block") == len(b) / len(ids)
    assert s.parallel_ratio_as("inside") == (len(b) - 2) / len(ids)
    with pytest.raises(ValueError, match="convention"):
        s.parallel_ratio_as("tags")  # type: ignore[arg-type]
    assert s.acceleration == pytest.approx(10 / len(ids))
    # model-only: drop the inserted "\n" before thread 1, both <Thread> tags, the join "\n" (4
    # sequential tokens) and the "\n2:" header inside the longest body (3 tokens)
    assert s.critical_path_model_only == s.critical_path - 7


def test_properties_random(char_fmt):
    rng = random.Random(0)
    tags = sorted(char_fmt.tags.all())
    for _ in range(300):
        toks = [
            rng.choice(tags) if rng.random() < 0.25 else rng.choice([10, 32, 97, 98])
            for _ in range(rng.randint(0, 60))
        ]
        tree = parse(toks, char_fmt)
        s = trajectory_stats(tree)
        assert critical_path_stream(toks, char_fmt) == s.critical_path, char_fmt.decode(toks)
        assert s.critical_path <= s.total_tokens
        assert 0.0 <= s.acceleration < 1.0 or s.total_tokens == 0
        assert s.self_parallelism >= 1.0


def test_stream_twin_on_wellformed(bpe_fmt):
    rng = random.Random(1)
    from tests.helpers.threads import random_parts

    for _ in range(10):
        ids, _ = encode_pieces(bpe_fmt, random_parts(rng, blocks=3))
        assert (
            critical_path_stream(ids, bpe_fmt)
            == trajectory_stats(parse(ids, bpe_fmt)).critical_path
        )


def test_speedup_mean_of_ratios():
    ours = [
        Rollout(problem="a", latency=50, total=80, correct=True),
        Rollout(problem="a", latency=150, total=200, correct=False),  # mean latency 100
        Rollout(problem="b", latency=100, total=100, correct=True),
        Rollout(problem="c", latency=10, total=10, correct=True),  # not in the baseline
    ]
    base = [
        Rollout(problem="a", latency=200, total=200, correct=True),
        Rollout(problem="b", latency=50, total=50, correct=False),
        Rollout(problem="b", latency=150, total=150, correct=True),  # mean latency 100
    ]
    r = speedup_vs_baseline(ours, base)
    assert r.problems == 2
    assert r.speedup == pytest.approx((200 / 100 + 100 / 100) / 2)  # 1.5, not the ratio of means
    # correct only: a: 200/50 = 4, b: 150/100 = 1.5
    assert r.speedup_correct_only == pytest.approx((4 + 1.5) / 2)
    assert r.max_speedup_correct_only == pytest.approx(4)
    assert r.self_parallelism == pytest.approx((80 + 200 + 100) / (50 + 150 + 100))
    assert "self-parallelism" in r.summary() and "speedup 1.500x" in r.summary()


def test_speedup_needs_common_problems():
    with pytest.raises(ValueError, match="same problems"):
        speedup_vs_baseline(
            [Rollout(problem="a", latency=1, total=1, correct=True)],
            [Rollout(problem="b", latency=1, total=1, correct=True)],
        )


def test_activation_ratio(char_fmt):
    f = char_fmt
    a = trajectory_stats(parse(encode_pieces(f, [BlockSpec(outlines=["p"], threads=["x"])])[0], f))
    b = trajectory_stats(parse(f.encode("plain"), f))
    assert activation_ratio([a, b, b, b]) == 0.25


def test_parallel_ratio_inside_an_unclosed_block(char_fmt):
    f = char_fmt
    text = "ab<Parallel>\n<Outlines>\n<Outline>1: p</Outline>\n</Outlines>\n<Thread>\n1: x"
    s = trajectory_stats(parse(f.encode(text), f))
    n_block = len(f.encode(text)) - 2  # "ab" is outside; the block runs to the end, no closer
    assert s.parallel_ratio_as("block") == n_block / (n_block + 2)
    assert s.parallel_ratio_as("inside") == (n_block - 1) / (n_block + 2)
