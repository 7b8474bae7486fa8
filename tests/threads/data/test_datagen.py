"""Stage-1 data generation against a scripted local chat endpoint."""

from __future__ import annotations

import json

import pytest

from plait.threads.data.datagen import (
    ChatClient,
    DatagenConfig,
    TraceBlock,
    apply_replacements,
    extract_blocks,
    number_lines,
    parse_structure,
    to_parallel,
)

TRACE = "\n".join([
    "We need 3*4 + 5*6.",                     # L1
    "Compute each product separately.",       # L2
    "First, 3*4: three fours are 12.",         # L3
    "So the first product is 12.",             # L4
    "Second, 5*6: as computed above we add.",  # L5
    "Five sixes are 30.",                      # L6
    "Adding: 12 + 30 = 42.",                   # L7
    "Answer: 42",                              # L8
])  # fmt: skip

STRUCTURE = (
    "check passed\n<Parallel><Thread>first product</Thread> (range: L3-L4)"
    "<Thread>second product</Thread> (range: L5-L6)</Parallel>"
)


def chat_handler(edits, outline_answer="1: Compute 3*4.\n2: Compute 5*6."):
    def handler(path, body):
        assert path == "/v1/chat/completions"
        msgs = body["messages"]
        last = msgs[-1]["content"]
        if "reasoning trace with numbered lines" in msgs[0]["content"]:
            assert "L3: First, 3*4" in msgs[0]["content"]
            answer = STRUCTURE if last.startswith("Task 6") else "ok"
        elif "FORBIDDEN" in last:
            answer = "Edits: " + json.dumps(edits)
        else:
            assert "Thread 2:" in last and "Compute each product" in last
            answer = outline_answer
        return {"choices": [{"message": {"role": "assistant", "content": answer}}]}

    return handler


def test_end_to_end(stub_server):
    server = stub_server(chat_handler([{"src": "as computed above we add", "dest": "we multiply"}]))
    client = ChatClient(base_url=server.url)
    res = to_parallel(client, TRACE, DatagenConfig(savings_threshold=10))
    assert res.text is not None and res.blocks == 1, res.skipped
    assert "<Thread>\n2: Second, 5*6: we multiply.\nFive sixes are 30.\n</Thread>" in res.text
    assert "<Outline>1: Compute 3*4.</Outline>" in res.text
    assert res.text.startswith("We need 3*4 + 5*6.\nCompute each product separately.\n<Parallel>")
    assert res.text.endswith("</Parallel>\nAdding: 12 + 30 = 42.\nAnswer: 42")
    assert res.chat_calls == 6 + 1 + 1  # structure turns, one reference call, one outline call
    turns = [b for _, b in server.calls][5]["messages"]
    assert len(turns) == 11  # six user turns, five earlier answers: one conversation


def test_shrink_guard_keeps_original(stub_server):
    server = stub_server(
        chat_handler([{"src": "Second, 5*6: as computed above we add.", "dest": ""}])
    )
    res = to_parallel(ChatClient(base_url=server.url), TRACE, DatagenConfig(savings_threshold=10))
    assert res.text is not None and "as computed above" in res.text
    assert sum("shrank" in s for s in res.skipped) == 2  # retried once, then the original is kept


def test_bad_outlines_drop_block(stub_server):
    server = stub_server(chat_handler([], outline_answer="1: only one"))
    res = to_parallel(ChatClient(base_url=server.url), TRACE, DatagenConfig(savings_threshold=10))
    assert res.text is None and any("outlines" in s for s in res.skipped)


def test_savings_filter_and_checks():
    lines = TRACE.split("\n")
    cfg = DatagenConfig(savings_threshold=10)
    kept, skipped = extract_blocks(lines, [[(3, 4), (5, 6)]], cfg)
    assert (
        len(kept) == 1
        and kept[0].threads[0] == "First, 3*4: three fours are 12.\nSo the first product is 12."
    )
    small = len("Second, 5*6: as computed above we add.\nFive sixes are 30.")  # the smaller thread
    assert extract_blocks(lines, [[(3, 4), (5, 6)]], DatagenConfig(savings_threshold=small))[0]
    _, why = extract_blocks(lines, [[(3, 4), (5, 6)]], DatagenConfig(savings_threshold=small + 1))
    assert "savings" in why[0]
    for group, reason in [([(3, 4)], "fewer than 2"), ([(3, 5), (5, 6)], "overlapping"),
                          ([(3, 3), (5, 6)], "gap"), ([(3, 4), (5, 99)], "outside")]:  # fmt: skip
        assert reason in extract_blocks(lines, [group], cfg)[1][0]


def test_helpers():
    assert number_lines("a\nb") == ["L1: a", "L2: b"]
    assert parse_structure(STRUCTURE) == [[(3, 4), (5, 6)]]
    assert (
        apply_replacements("x y x", [{"src": "x", "dest": "z"}, {"src": "nope", "dest": "q"}])
        == "z y x"
    )
    assert isinstance(TraceBlock(ranges=[(1, 1)], threads=["a"]), TraceBlock)
    with pytest.raises(ValueError, match="min_keep"):
        DatagenConfig(min_keep=0)
