"""Equivalences with plain causal decoding, and merge invariance.

- One worker (steps merged into the history as they end) equals plain greedy decoding.
- Workers that take turns equal plain causal decoding of the KV-order transcript.
- A step moved into the history (one rotation) gives the same future logits as the same tokens
  written into the history directly.
"""

from __future__ import annotations

import random

import torch

from plait.hogwild.config import HogwildConfig
from plait.hogwild.layouts import Layout, get_layout
from plait.hogwild.problem import HogwildProblem
from plait.hogwild.solve import solve
from plait.hogwild.workspace import Feed, Workspace
from plait.runtime.attention.dense import causal_context
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.segments import KVStore
from tests.helpers.toy import ToyTokenizer, toy_model


def causal_logits(model, ids: list[int]) -> torch.Tensor:  # noqa: ANN001
    """Logits (T, V) of a plain causal forward over `ids` (no cache at all)."""
    x = torch.tensor(ids)
    with torch.no_grad():
        return model(x, causal_context(model.rope, len(ids)))


def test_one_worker_equals_plain_greedy_decoding(family: str) -> None:
    tok, model = ToyTokenizer(), toy_model(family, seed=11)
    rng = random.Random(0)
    fed: list[int] = []
    rows: list[tuple[int, torch.Tensor]] = []  # (tokens fed so far, logits) per stream
    sampled_from: list[int] = []  # per pass: tokens fed when the worker's next token was sampled
    firsts: list[int] = []  # per pass: the first token fed (the one sampled in the previous pass)

    def on_pass(problem, index, feeds, streams, logits):  # noqa: ANN001, ANN202
        firsts.append(feeds[0].cur[0])
        for s, row in zip(streams, logits):
            fed.extend(s.tokens)
            rows.append((len(fed), row.clone()))
            if s.logits:
                sampled_from.append(len(fed))

    cfg = HogwildConfig(
        workers=1,
        instructions="Be brief.",
        budgets=(40,),
        finisher=False,
        suppress=(),
        stop_on_answer=False,
    )
    prompt = tok.encode(HogwildProblem(model, tok, cfg, "Count.").prompt_text)
    res = solve(model, tok, "Count.", cfg, step_rule=lambda a, b: rng.random() < 0.3,
                on_pass=on_pass)  # fmt: skip
    ref = causal_logits(model, prompt + fed)
    for n, row in rows:  # every stream's last-token logits equal the plain forward's
        torch.testing.assert_close(row, ref[len(prompt) + n - 1], atol=1e-4, rtol=1e-4)
    for n, nxt in zip(
        sampled_from, firsts[1:]
    ):  # greedy: each token is the plain argmax (EOS banned)
        row = ref[len(prompt) + n - 1].clone()
        row[tok.eos_token_id] = -torch.inf
        assert nxt == int(row.argmax())
    assert len([s for s in res.final.steps if s.finished]) > 3  # steps were merged along the way
    assert len(rows) > len(sampled_from)  # some passes ran two streams (step end + next header)


def _setup(model, layout: Layout, workers: int, prompt: list[int]):  # noqa: ANN001, ANN202
    store = KVStore(model.config, dtype=model.dtype, rope=model.rope)
    runner = Runner(model, store)
    ws = Workspace(store, layout, workers, capacity=64, instant=True, prompt_capacity=256)
    runner.prefill(ws.common, prompt)
    return runner, ws


def _run(runner: Runner, ws: Workspace, feeds: list[Feed | None]) -> dict[int, torch.Tensor]:
    streams = ws.plan(feeds)
    logits = runner.step([StreamInput(s.tokens, s.view, s.write_to) for s in streams])
    ws.commit(feeds)
    return {s.worker: logits[k] for k, s in enumerate(streams) if s.logits}


def test_turn_taking_equals_causal_decoding_of_kv_order(family: str) -> None:
    """Interleaved layout; one worker active at a time, each writes a whole step that is merged."""
    model = toy_model(family, seed=12)
    rng = random.Random(1)
    prompt = [rng.randrange(2, 100) for _ in range(20)]
    runner, ws = _setup(model, get_layout("interleaved"), 3, prompt)
    transcript = list(prompt)
    for turn in range(6):
        w = turn % 3
        step = [rng.randrange(2, 100) for _ in range(rng.randrange(2, 6))]
        # feed all but the last token in ragged chunks, then the last one ends the step (merge)
        i = 0
        while i < len(step) - 1:
            n = rng.randrange(1, 3)
            chunk = step[i : min(i + n, len(step) - 1)]
            got = _run(runner, ws, [Feed(cur=chunk) if j == w else None for j in range(3)])[w]
            transcript += chunk
            torch.testing.assert_close(
                got, causal_logits(model, transcript)[-1], atol=1e-4, rtol=1e-4
            )
            i += len(chunk)
        got = _run(
            runner, ws, [Feed(cur=step[-1:], switch=True) if j == w else None for j in range(3)]
        )[w]
        transcript += step[-1:]
        torch.testing.assert_close(got, causal_logits(model, transcript)[-1], atol=1e-4, rtol=1e-4)
    assert ws.common.tokens == transcript


def test_contiguous_turn_taking_without_separator() -> None:
    """Views [prompt, other, own]: B writes while A idles, then A; A's logits = causal forward."""
    model = toy_model("qwen2", seed=13)
    lay = Layout(
        name="plain-contiguous",
        shared=lambda w: [],
        views=lambda s: [
            [*s.history, s.current[1], s.current[0]],
            [*s.history, s.current[0], s.current[1]],
        ],
        merges_steps=False,
    )
    rng = random.Random(2)
    prompt = [rng.randrange(2, 100) for _ in range(12)]
    runner, ws = _setup(model, lay, 2, prompt)
    b = [rng.randrange(2, 100) for _ in range(5)]
    _run(runner, ws, [None, Feed(cur=b)])
    a = [rng.randrange(2, 100) for _ in range(4)]
    for k in range(len(a)):
        got = _run(runner, ws, [Feed(cur=[a[k]]), None])[0]
        torch.testing.assert_close(
            got, causal_logits(model, prompt + b + a[: k + 1])[-1], atol=1e-4, rtol=1e-4
        )


def test_merged_step_equals_tokens_placed_in_history(family: str) -> None:
    """Step written in a worker segment then moved == the same tokens written into the history."""
    model = toy_model(family, seed=14)
    rng = random.Random(3)
    prompt = [rng.randrange(2, 100) for _ in range(15)]
    step = [rng.randrange(2, 100) for _ in range(7)]
    future = [rng.randrange(2, 100) for _ in range(6)]
    lay = get_layout("interleaved")
    # A: worker 0 writes the step in its own segment (ragged chunks), then it is merged
    runner_a, ws_a = _setup(model, lay, 2, prompt)
    _run(runner_a, ws_a, [Feed(cur=step[:3]), None])
    _run(runner_a, ws_a, [Feed(cur=step[3:6]), None])
    _run(runner_a, ws_a, [Feed(cur=step[6:], switch=True), None])
    # B: the same tokens placed in the history directly
    runner_b, ws_b = _setup(model, lay, 2, prompt)
    runner_b.prefill(ws_b.common, step)
    assert ws_a.common.tokens == ws_b.common.tokens == prompt + step
    assert ws_a.current[0].length == 0
    n = ws_a.common.length
    torch.testing.assert_close(
        ws_a.common.k[:, :, :n], ws_b.common.k[:, :, :n], atol=1e-5, rtol=1e-5
    )
    torch.testing.assert_close(ws_a.common.v[:, :, :n], ws_b.common.v[:, :, :n])
    for t in future:  # both workers continue; every future logit agrees
        la = _run(runner_a, ws_a, [Feed(cur=[t]), Feed(cur=[t + 1])])
        lb = _run(runner_b, ws_b, [Feed(cur=[t]), Feed(cur=[t + 1])])
        for w in (0, 1):
            torch.testing.assert_close(la[w], lb[w], atol=1e-4, rtol=1e-4)
