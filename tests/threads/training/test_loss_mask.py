"""Exactly which tokens carry loss: headers and joins where the model writes them, nowhere else.

Counts on hand-built trajectories (char-level tokens: one per character, one per tag), on the
units and on the packed trie (a node is trained once, however many units contain it).
"""

from __future__ import annotations

import random

import pytest

from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.inference.backend_api import ScriptedBackend
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig
from plait.threads.training.rl_loss import rl_units
from plait.threads.training.trie import build_trie
from plait.threads.training.units import extract_units


def _trajectory(fmt, parts, prompt="Q"):
    ids, gen = encode_pieces(fmt, parts)
    ids, gen = ids + list(fmt.eos_ids), gen + [True]
    p = fmt.encode(prompt)
    return p + ids, len(p), [not g for g in gen]


def test_hand_counted_one_block(char_fmt):
    # response: "s\n" 2, "<Parallel>\n<Outlines>\n" 4, two outline lines 7 + 7, </Outlines> 1,
    # lead "\n" 1, "<Thread>\n1:" 4, " x\n</Thread>" 4, "<Thread>\n2:" 4, " yy\n</Thread>" 5,
    # join "\n" 1, "</Parallel>\nt" 3, EOS 1 = 44 tokens, of which 1 + 4 + 4 + 1 = 10 inserted.
    parts = ["s\n", BlockSpec(outlines=["a", "b"], threads=["x", "yy"]), "\nt"]
    tokens, p, inserted = _trajectory(char_fmt, parts)
    assert len(tokens) - p == 44 and sum(inserted) == 10
    units = extract_units(tokens, char_fmt, prompt_len=p, inserted=inserted)
    full, seq0, t1, t2, seq1 = units
    assert all(full.generated) and len(full.generated) == 44  # headers + join trained here
    assert [sum(u.generated) for u in (seq0, t1, t2, seq1)] == [21, 4, 5, 4]
    flat = build_trie(units)
    # trained: the 44 full-path tokens + thread 2's branch " yy\n</Thread>" (5);
    # untrained: the prompt "Q" + thread 2's own "2:" (its "\n<Thread>\n" is shared with thread 1's)
    assert (sum(flat.trained), len(flat) - sum(flat.trained), len(flat)) == (49, 3, 52)
    untrained = [t for t, tr in zip(flat.tokens, flat.trained) if not tr]
    assert char_fmt.decode(untrained) == "Q2:"
    # the previous mask: no loss on headers/join anywhere (34 + 5 trained; 1 + 10 + 2 not)
    old = build_trie(extract_units(tokens, char_fmt, prompt_len=p, inserted=inserted,
                                   header_loss=False))  # fmt: skip
    assert (sum(old.trained), len(old)) == (39, 52)
    # RL trains the calls only: the orchestrator's inserted tokens never carry loss there
    assert sum(build_trie(rl_units(units)).trained) == 34


SHAPES = [(1,), (2,), (4,), (3, 1), (2, 4, 1), (4, 4)]


def _parts(shape, rng):
    parts: list = ["go\n"]
    for b, n in enumerate(shape):
        bodies = ["".join(rng.choice("abcdef") for _ in range(rng.randint(1, 9))) for _ in range(n)]
        parts += [BlockSpec(outlines=[f"o{b}{i}" for i in range(n)], threads=bodies), f"\nm{b}\n"]
    return parts


@pytest.mark.parametrize("shape", SHAPES)
def test_counts_for_1_to_4_threads_and_several_blocks(char_fmt, shape):
    parts = _parts(shape, random.Random(len(shape) * 10 + shape[0]))
    tokens, p, inserted = _trajectory(char_fmt, parts)
    units = extract_units(tokens, char_fmt, prompt_len=p, inserted=inserted)
    blocks = [x for x in parts if isinstance(x, BlockSpec)]
    siblings = [f" {body}\n</Thread>" for b in blocks for body in b.threads[1:]]
    response = len(tokens) - p
    # units: the full path trains every response token; calls train all but inserted tokens
    assert all(units[0].generated) and len(units[0].generated) == response
    calls = units[1:]
    assert sum(sum(u.generated) for u in calls) == response - sum(inserted)  # each once
    assert len(calls) == 1 + sum(1 + len(b.threads) for b in blocks)  # seq + threads per block
    for u in calls:
        if u.kind == "thread":  # a thread's header is context, its completion all trained
            assert char_fmt.decode(u.context[-3:]) == f"\n{u.thread}:" and all(u.generated)
    flat = build_trie(units)
    trained = sum(flat.trained)
    assert trained == response + sum(len(char_fmt.encode(s)) for s in siblings)
    assert len(flat) - trained == p + 2 * len(siblings)  # prompt + each sibling's "i:"
    # with 1 thread per block there are no siblings: the trie is the trajectory itself
    if all(n == 1 for n in shape):
        assert flat.tokens == tokens


def test_forced_closers_and_model_written_blocks(char_fmt):
    """A length-cut thread's forced closer carries no loss; a block the model writes itself
    after max_blocks is one sequential call whose headers carry loss."""
    f = char_fmt
    first = (
        "s\n<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: b</Outline>\n</Outlines>"
    )
    ar = ("</Parallel>\n<Parallel>\n<Outlines>\n<Outline>1: c</Outline>\n</Outlines>\n"
          "<Thread>\n1: z\n</Thread>\n</Parallel>\nA")  # fmt: skip

    def script(req):
        if req.stop_token_ids == (f.tags.thread_end,):
            return f.encode(" x\n</Thread>") if f.decode(req.context[-2:]) == "1:" else [121] * 9
        return f.encode(first if f.tags.parallel not in req.context else ar) + [264]

    cfg = OrchestratorConfig(max_blocks=1, max_thread_tokens=4)
    run = Orchestrator(ScriptedBackend(script=script), f, cfg).run_sync(f.encode("Q"))
    assert f.decode(run.response).count("<Thread>") == 3 and run.stop_reason == "eos"
    forced = [k for k, t in enumerate(run.response) if run.inserted[k]]
    assert f.decode([run.response[k] for k in forced]) == "\n<Thread>\n1:<Thread>\n2:\n</Thread>\n"
    units = extract_units(run.tokens, f, prompt_len=1, inserted=run.inserted)
    assert [u.kind for u in units] == ["full", "seq", "thread", "thread", "seq"]  # no AR threads
    full, _, _, t2, last = units
    # the full path trains all but the forced "\n</Thread>" closing the cut thread 2
    assert f.decode([t for t, g in zip(full.completion, full.generated) if not g]) == "\n</Thread>"
    assert f.decode(t2.completion) == "yyyy\n</Thread>" and sum(t2.generated) == 4
    assert f.decode(last.completion) == ar + "<|eos|>" and all(last.generated)
    flat = build_trie(units)
    untrained = f.decode([t for t, tr in zip(flat.tokens, flat.trained) if not tr])
    assert sorted(untrained) == sorted("Q" + "\n</Thread>" + "2:" + "\n</Thread>")
