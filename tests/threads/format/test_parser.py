"""Parser: token ids -> segment tree (lenient)."""

from __future__ import annotations

from plait.threads.format.parser import Block, Seq, parse
from plait.threads.format.render import BlockSpec, encode_pieces


def test_structure(char_fmt):
    f = char_fmt
    ids, _ = encode_pieces(f, ["ab", BlockSpec(outlines=["p", "q"], threads=["x", "yyy"]), "\ncd"])
    prompt = f.encode("Q?")
    tree = parse(prompt + ids, f, prompt_len=2)
    kinds = [type(n).__name__ for n in tree.nodes]
    assert kinds == ["Seq", "Block", "Seq"]
    s0, b, s1 = tree.nodes
    assert (s0.start, s0.end) == (2, 4)
    assert isinstance(b, Block) and b.closed and b.outlines_closed
    assert [o.number for o in b.outlines] == ["1", "2"]
    assert [t.number for t in b.threads] == ["1", "2"]
    # thread bodies: "\n1: x\n" (6) and "\n2: yyy\n" (8)
    assert [t.body_len for t in b.threads] == [6, 8]
    assert b.longest_thread == 8 and b.thread_body_tokens == 14
    assert f.decode(tree.tokens[b.end - 1 : b.end]) == "</Parallel>"
    assert isinstance(s1, Seq) and f.decode(tree.tokens[s1.start : s1.end]) == "\ncd"
    assert sum(len(n) for n in tree.nodes) == tree.response_len


def test_unclosed_block_cut_at_text(char_fmt):
    f = char_fmt
    text = "<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n</Outlines>\n<Thread>\n1: x\n</Thread>\nmore"
    tree = parse(f.encode(text), f)
    b = tree.nodes[0]
    assert isinstance(b, Block) and not b.closed
    assert f.decode(tree.tokens[tree.nodes[1].start :]) == "more"


def test_unclosed_thread_runs_to_end(char_fmt):
    f = char_fmt
    tree = parse(f.encode("<Parallel>\n<Outlines>\n</Outlines>\n<Thread>\n1: abc"), f)
    (b,) = tree.nodes
    assert not b.closed and not b.threads[0].closed and b.threads[0].body_len == len("\n1: abc")


def test_stray_tags_are_text(char_fmt):
    f = char_fmt
    tree = parse(f.encode("x</Thread>y<Outline>"), f)
    assert len(tree.nodes) == 1 and isinstance(tree.nodes[0], Seq)


def test_nested_parallel_is_literal(char_fmt):
    f = char_fmt
    text = "<Parallel>\n<Outlines>\n</Outlines>\n<Thread>\n1: <Parallel>x\n</Thread>\n</Parallel>"
    tree = parse(f.encode(text), f)
    assert len(tree.blocks) == 1 and tree.blocks[0].closed
