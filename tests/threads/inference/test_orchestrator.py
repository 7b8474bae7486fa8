"""Orchestrator: equals plain generation without forks; request contexts equal extracted units."""

from __future__ import annotations

import asyncio
import random

import pytest

from plait.threads.format.render import BlockSpec, encode_pieces
from plait.threads.format.validate import validate
from plait.threads.inference.backend_api import CompletionRequest, NextTokenBackend, ScriptedBackend
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig
from plait.threads.training.units import extract_units
from tests.helpers.threads import random_parts


def _plain_next(eos_at: int):
    def nxt(ctx: list[int]) -> int:
        if len(ctx) >= eos_at:
            return 264  # CharTokenizer EOS
        return 97 + (sum(ctx[-3:]) * 31 + len(ctx)) % 26  # letters only: never a tag

    return nxt


@pytest.mark.parametrize(("eos_at", "budget"), [(60, 1000), (500, 50)])
def test_no_fork_equals_single_request(char_fmt, eos_at, budget):
    prompt = char_fmt.encode("Question: add.\n")
    single = NextTokenBackend(next_token=_plain_next(eos_at))
    req = CompletionRequest(context=prompt, max_tokens=budget, eos_token_ids=(264,))
    (want,) = asyncio.run(single.complete([req]))
    engine = NextTokenBackend(next_token=_plain_next(eos_at))
    run = Orchestrator(engine, char_fmt, OrchestratorConfig(max_total_tokens=budget)).run_sync(
        prompt
    )
    assert run.response == want.tokens
    assert len(engine.requests) == 1 and not any(run.inserted)
    assert run.stop_reason == want.finish_reason


def _forking_script(fmt, prompt, parts):
    """An engine that plays `parts`: continues the target for sequential requests and answers
    thread requests from the BlockSpec the context points at (independently of units.py)."""
    ids, gen = encode_pieces(fmt, parts)
    target = prompt + ids
    blocks = [p for p in parts if isinstance(p, BlockSpec)]

    def script(req: CompletionRequest) -> list[int]:
        ctx = req.context
        if req.stop_token_ids == (fmt.tags.thread_end,):
            b = blocks[ctx.count(fmt.tags.outlines_end) - 1]
            n = int(
                fmt.decode(ctx[len(ctx) - 1 - ctx[::-1].index(fmt.tags.thread) + 1 :]).strip(" \n:")
            )
            return fmt.encode(f" {b.threads[n - 1].strip()}\n</Thread>")
        assert target[: len(ctx)] == ctx, "sequential context is not a prefix of the trajectory"
        return target[len(ctx) :] + list(fmt.eos_ids)

    return ScriptedBackend(script=script), target, gen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("which", ["char", "bpe"])
def test_scripted_forks_match_units(char_fmt, bpe_fmt, which, seed):
    fmt = char_fmt if which == "char" else bpe_fmt
    rng = random.Random(seed)
    parts = random_parts(rng, blocks=rng.randint(1, 3))
    prompt = fmt.encode("Solve it.\n")
    engine, target, gen = _forking_script(fmt, prompt, parts)
    run = Orchestrator(engine, fmt, OrchestratorConfig()).run_sync(prompt)
    assert run.tokens == target + list(fmt.eos_ids)
    assert run.inserted == [not g for g in gen] + [False]
    assert run.stop_reason == "eos"
    assert validate(run.tokens, fmt, prompt_len=len(prompt)) == []
    units = [u for u in extract_units(run.tokens, fmt, prompt_len=len(prompt)) if u.kind != "full"]
    assert [c.context for c in run.calls] == [u.context for u in units]
    for c, u in zip(run.calls, units):
        assert c.completion.tokens == [t for t, g in zip(u.completion, u.generated) if g]
    # one batch per block, holding all of its threads
    n_threads = [len(p.threads) for p in parts if isinstance(p, BlockSpec)]
    assert [b for b in engine.batches if b > 1] == [k for k in n_threads if k > 1]
    assert len(run.tree.blocks) == len(n_threads)


def test_eos_inside_thread_joins_whole_block(char_fmt):
    f = char_fmt
    prompt = f.encode("Q\n")
    head = f.encode(
        "go\n<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: b</Outline>\n</Outlines>"
    )
    engine = ScriptedBackend(script=[head, f.encode(" x\n</Thread>"), f.encode(" y") + [264]])
    run = Orchestrator(engine, f, OrchestratorConfig()).run_sync(prompt)
    assert run.stop_reason == "eos_in_thread"
    text = f.decode(run.response)
    assert text.endswith("<Thread>\n1: x\n</Thread><Thread>\n2: y\n</Thread>\n</Parallel>")
    assert 264 not in run.response
    assert validate(run.tokens, f, prompt_len=len(prompt)) == []
    units = extract_units(run.tokens, f, prompt_len=len(prompt), inserted=run.inserted)
    assert [c.context for c in run.calls] == [u.context for u in units if u.kind != "full"]


def test_thread_length_cap_closes_and_continues(char_fmt):
    f = char_fmt
    prompt = f.encode("Q\n")
    head = f.encode("<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n</Outlines>")
    tail = f.encode("</Parallel>\ndone") + [264]
    engine = ScriptedBackend(script=[head, f.encode(" abcdefghijklmnop\n</Thread>"), tail])
    run = Orchestrator(engine, f, OrchestratorConfig(max_thread_tokens=5)).run_sync(prompt)
    assert engine.requests[1].max_tokens == 5
    assert f.decode(run.response).endswith("<Thread>\n1: abcd\n</Thread>\n</Parallel>\ndone<|eos|>")
    assert run.stop_reason == "eos" and len(run.calls) == 3
    assert validate(run.tokens, f, prompt_len=len(prompt)) == []
    units = extract_units(run.tokens, f, prompt_len=len(prompt), inserted=run.inserted)
    assert [c.context for c in run.calls] == [u.context for u in units if u.kind != "full"]
    (thread,) = [u for u in units if u.kind == "thread"]
    assert (
        f.decode(thread.completion) == " abcd\n</Thread>"
        and thread.generated == [True] * 5 + [False] * 2
    )


def test_duplicate_and_missing_numbers(char_fmt):
    f = char_fmt
    head = f.encode(
        "<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>1: again</Outline>\n"
        "<Outline>no number</Outline>\n<Outline>3: c</Outline>\n</Outlines>"
    )
    engine = ScriptedBackend(
        script=[head, f.encode(" x\n</Thread>"), f.encode(" z\n</Thread>"), [264]]
    )
    run = Orchestrator(engine, f, OrchestratorConfig()).run_sync(f.encode("Q"))
    assert [c.number for c in run.calls if c.kind == "thread"] == ["1", "3"]
    assert "<Thread>\n3: z\n</Thread>" in f.decode(run.response)


def test_no_numbered_outlines_continues_sequentially(char_fmt):
    f = char_fmt
    engine = ScriptedBackend(
        script=[f.encode("<Parallel>\n<Outlines>\n</Outlines>"), f.encode("more") + [264]]
    )
    run = Orchestrator(engine, f, OrchestratorConfig()).run_sync(f.encode("Q"))
    assert run.warnings and len(run.calls) == 2 and run.stop_reason == "eos"


def test_max_threads_and_max_blocks(char_fmt):
    f = char_fmt
    outl = "".join(f"<Outline>{i}: o</Outline>\n" for i in range(1, 5))
    head = f.encode(f"<Parallel>\n<Outlines>\n{outl}</Outlines>")
    engine = ScriptedBackend(
        script=lambda r: f.encode(" t\n</Thread>") if r.tag.startswith("thread") else head
    )
    run = Orchestrator(
        engine, f, OrchestratorConfig(max_threads=2, max_blocks=1, max_total_tokens=400)
    ).run_sync(f.encode("Q"))
    assert engine.batches[1] == 2 and run.warnings
    # after one block, </Outlines> is no longer a stop token: the rest is one AR request
    assert engine.requests[-1].stop_token_ids == ()
    assert run.stop_reason == "length"
    assert len(run.response) <= 400


def test_total_budget(char_fmt):
    f = char_fmt
    head = f.encode(
        "<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: b</Outline>\n</Outlines>"
    )
    engine = ScriptedBackend(script=lambda r: head if r.tag == "seq" else f.encode(" " + "x" * 100))
    run = Orchestrator(engine, f, OrchestratorConfig(max_total_tokens=120)).run_sync(f.encode("Q"))
    assert run.stop_reason == "length"
    assert len(run.response) <= 120
    assert f.decode(run.response).endswith("\n</Thread>\n</Parallel>")
    assert validate(run.tokens, f, prompt_len=1) == []


def test_config_validation():
    with pytest.raises(ValueError, match="max_threads"):
        OrchestratorConfig(max_threads=0)
