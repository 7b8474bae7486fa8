"""Request isolation: a request whose sampler, detokenizer, admission, group plan or group inputs
fail ends alone with an error output and frees its KV; the others' outputs equal a run without
it. Faults are injected (mocks replace only the faulty request's piece). Tiny random fp32 models."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from plait.runtime.engine import (
    Engine,
    EngineConfig,
    EngineRequest,
    GroupOutput,
    SampleOutput,
)
from plait.runtime.engine import engine as engine_module
from plait.runtime.engine import scheduler as scheduler_module
from plait.runtime.engine.detokenize import TextStream, stop_rules
from plait.runtime.engine.requests import TokenLogprob
from plait.runtime.runner import Runner, StreamInput
from plait.runtime.sampling import Sampler, SamplingParams
from plait.runtime.segments import KVStore, Segment
from tests.helpers.tiny import tiny_model

BOOM = 991  # the faulty request's seed: the injected fault keys on it


class CharTokenizer:
    """Enough of a tokenizer for text outputs and stop strings: one letter per id."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return "".join(chr(97 + t % 26) for t in ids)


class FaultySampler(Sampler):
    """A sampler that raises on its `after`-th call (0: at construction, as a bad seed does)."""

    after = 3

    def __init__(self, params: list[SamplingParams]) -> None:
        if self.after == 0:
            raise OverflowError("injected: the seed does not fit")
        super().__init__(params)
        self.calls = 0

    def __call__(self, logits: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        self.calls += 1
        if self.calls >= self.after:
            raise RuntimeError("injected: the sampler failed")
        return super().__call__(logits, *args, **kwargs)


def sampler_factory(params: list[SamplingParams]) -> Sampler:
    return FaultySampler(params) if params[0].seed == BOOM else Sampler(params)


class FaultyText(TextStream):
    """A text stream that raises on the faulty request's third token."""

    def add(self, token: int) -> str:
        if "boom" in self.stop and len(self.ids) >= 2:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "injected")
        return super().add(token)


class GreedyGroup:
    """A minimal `StreamGroup`: one stream, prompt then `n` greedy tokens; `fail_at` makes
    `plan` raise at that step, `bad_at` makes it hand the runner an id outside the vocabulary."""

    def __init__(self, prompt: list[int], n: int, fail_at: int = -1, bad_at: int = -1) -> None:
        self.prompt, self.n, self.fail_at, self.bad_at = prompt, n, fail_at, bad_at
        self.kv_tokens, self.rows, self.instant = len(prompt) + n, 1, True
        self.tokens: list[int] = []
        self.seg: Segment | None = None
        self.store: KVStore | None = None
        self.steps = 0

    def start(self, store: KVStore, runner: Runner) -> None:
        self.store, self.seg = store, store.new_segment(self.kv_tokens)

    def plan(self, budget: int) -> list[StreamInput]:
        self.steps += 1
        if self.steps == self.fail_at:
            raise KeyError("injected: the group's plan failed")
        assert self.seg is not None
        feed = [self.tokens[-1]] if self.tokens else list(self.prompt)
        if self.steps == self.bad_at:
            feed = [10**6]
        return [StreamInput(feed, [self.seg], self.seg)]

    def advance(self, logits: torch.Tensor) -> list[int]:
        self.tokens.append(int(torch.argmax(logits[0])))
        return [self.tokens[-1]]

    @property
    def done(self) -> bool:
        return len(self.tokens) >= self.n

    def release(self) -> None:
        if self.store is not None and self.seg is not None:
            self.store.free(self.seg)


def _prompt(n: int, salt: int) -> list[int]:
    return [(i * 29 + salt * 13) % 120 + 3 for i in range(n)]


def _requests() -> list[EngineRequest]:
    """Valid neighbours: greedy and seeded sampling, n up to 2, stop strings, log-probs."""
    return [
        EngineRequest(prompt=_prompt(40, 1), max_tokens=10, request_id="a", logprobs=2),
        EngineRequest(prompt=_prompt(23, 2), max_tokens=12, n=2, request_id="b",
                      sampling=SamplingParams(temperature=0.8, top_k=20, seed=4)),
        EngineRequest(prompt=_prompt(40, 1)[:33] + [7], max_tokens=9, request_id="c", stop=("q",)),
    ]  # fmt: skip


def _run(engine: Engine, requests: list[EngineRequest], groups: dict[str, GreedyGroup]) -> dict:
    """Every request's and group's outputs: tokens/text/finish per sample, events per group."""
    for r in requests:
        engine.add(r)
    for rid, g in groups.items():
        engine.add_group(g, rid)
    out: dict = {}
    while engine.has_work:
        for o in engine.step():
            if isinstance(o, SampleOutput):
                d = out.setdefault((o.request_id, o.index), {"tokens": [], "text": "", "lp": []})
                d["tokens"] += o.token_ids
                d["text"] += o.text
                d["lp"] += [(lp.token, round(lp.logprob, 4)) for lp in o.logprobs]
                d["finish"], d["error"] = o.finish_reason, o.error
            else:
                assert isinstance(o, GroupOutput)
                d = out.setdefault((o.request_id, 0), {"events": [], "error": None})
                d["events"] += o.events
                d["error"] = o.error
    return out


def _engine(m) -> Engine:  # noqa: ANN001
    cfg = EngineConfig(block_tokens=8, step_tokens=64, kv_budget_tokens=2048, max_rows=16)
    return Engine(m, CharTokenizer(), config=cfg, eos_token_ids=())


def _idle(engine: Engine) -> bool:
    engine.cache.evict(engine.cache.total_tokens())
    return engine.request_kv_tokens() == 0 and not engine.store.segments and not engine.has_work


@pytest.mark.parametrize("after", [0, 1, 3])
def test_a_failing_sampler_ends_only_its_request(monkeypatch, after):
    m = tiny_model("llama", seed=7)
    clean = _run(_engine(m), _requests(), {})
    monkeypatch.setattr(scheduler_module, "Sampler", sampler_factory)
    monkeypatch.setattr(FaultySampler, "after", after)
    bad = EngineRequest(prompt=_prompt(30, 1), max_tokens=12, n=2, request_id="bad",
                        sampling=SamplingParams(temperature=1.0, seed=BOOM))  # fmt: skip
    engine = _engine(m)
    got = _run(engine, [_requests()[0], bad, *_requests()[1:]], {})
    errors = {k: v for k, v in got.items() if k[0] == "bad"}
    assert {v["finish"] for v in errors.values()} == {"error"}
    assert all("injected" in v["error"] for v in errors.values())
    assert {k: v for k, v in got.items() if k[0] != "bad"} == clean
    assert engine.stats.failed_requests == 1 and _idle(engine)


def test_a_failing_detokenizer_ends_only_its_request(monkeypatch):
    m = tiny_model("qwen2", seed=3)
    clean = _run(_engine(m), _requests(), {})
    monkeypatch.setattr(scheduler_module, "TextStream", FaultyText)
    bad = EngineRequest(prompt=_prompt(50, 4), max_tokens=8, request_id="bad", stop=("boom",))
    engine = _engine(m)
    got = _run(engine, [*_requests(), bad], {})
    assert got[("bad", 0)]["finish"] == "error" and "UnicodeDecodeError" in got[("bad", 0)]["error"]
    assert len(got[("bad", 0)]["tokens"]) == 2  # two tokens out, then the failure
    assert {k: v for k, v in got.items() if k[0] != "bad"} == clean
    assert _idle(engine)


@pytest.mark.parametrize("piece", ["logprobs", "stop rules"])
def test_failing_logprobs_or_stop_rules_end_only_their_request(monkeypatch, piece):
    m = tiny_model("qwen3", seed=5)
    clean = _run(_engine(m), _requests(), {})
    if piece == "logprobs":  # the faulty request asks for 7 alternatives
        real_of = TokenLogprob.of.__func__  # type: ignore[attr-defined]

        def of(cls, logp, token, top):  # noqa: ANN001, ANN202
            if top == 7:
                raise IndexError("injected: top-k failed")
            return real_of(cls, logp, token, top)

        monkeypatch.setattr(TokenLogprob, "of", classmethod(of))
        bad = EngineRequest(prompt=_prompt(12, 9), max_tokens=5, request_id="bad", logprobs=7)
    else:  # the faulty request has stop id 127

        def rules(req, text, tok, at_budget, eos):  # noqa: ANN001, ANN202
            if 127 in req.stop_token_ids:
                raise ZeroDivisionError("injected: a stop rule failed")
            return stop_rules(req, text, tok, at_budget, eos)

        monkeypatch.setattr(engine_module, "stop_rules", rules)
        bad = EngineRequest(prompt=_prompt(12, 9), max_tokens=5, request_id="bad",
                            stop_token_ids=(127,))  # fmt: skip
    engine = _engine(m)
    got = _run(engine, [bad, *_requests()], {})
    assert got[("bad", 0)]["finish"] == "error" and "injected" in got[("bad", 0)]["error"]
    assert {k: v for k, v in got.items() if k[0] != "bad"} == clean
    assert engine.stats.failed_requests == 1 and _idle(engine)


@pytest.mark.parametrize("fault", ["plan", "inputs"])
def test_a_failing_group_ends_alone_next_to_requests_and_groups(fault):
    m = tiny_model("llama", seed=11)

    def groups() -> dict[str, GreedyGroup]:
        return {"g": GreedyGroup(_prompt(20, 6), 7)}

    clean = _run(_engine(m), _requests(), groups())
    kw = {"fail_at": 3} if fault == "plan" else {"bad_at": 3}
    engine = _engine(m)
    got = _run(engine, _requests(), {**groups(), "bad": GreedyGroup(_prompt(25, 8), 9, **kw)})
    assert got[("bad", 0)]["error"] and len(got[("bad", 0)]["events"]) == 2
    assert ("KeyError" if fault == "plan" else "vocabulary") in got[("bad", 0)]["error"]
    assert {k: v for k, v in got.items() if k[0] != "bad"} == clean
    assert clean[("g", 0)]["events"] and engine.stats.failed_requests == 1 and _idle(engine)


def test_a_forward_failure_without_a_culprit_fails_the_step_and_the_engine_goes_on(monkeypatch):
    m = tiny_model("llama", seed=2)
    engine = _engine(m)
    real = engine.runner.step
    calls = {"n": 0}

    def flaky(inputs, instant=True, all_logits=False):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("injected: the device failed")
        return real(inputs, instant, all_logits)

    monkeypatch.setattr(engine.runner, "step", flaky)
    got = _run(engine, _requests(), {})
    assert "error" in {v["finish"] for v in got.values()}  # the requests of the failed step
    assert _idle(engine)
    after = engine.generate([EngineRequest(prompt=_prompt(40, 1), max_tokens=10)])[0][0]
    assert after == _run(_engine(m), _requests()[:1], {})[("a", 0)]["tokens"]


def test_generate_raises_for_a_failed_request_and_bad_seeds_are_refused_at_add(monkeypatch):
    m = tiny_model("llama", seed=7)
    engine = _engine(m)
    with pytest.raises(ValueError, match="64-bit"):
        engine.add(EngineRequest(prompt=[1, 2], sampling=SamplingParams(seed=2**64)))
    with pytest.raises(ValueError, match="64-bit"):
        engine.add(EngineRequest(prompt=[1, 2], sampling=SamplingParams(seed=-(2**63) - 1)))
    monkeypatch.setattr(scheduler_module, "Sampler", sampler_factory)
    bad = EngineRequest(prompt=[1, 2, 3], sampling=SamplingParams(temperature=1.0, seed=BOOM))
    with pytest.raises(RuntimeError, match="injected: the sampler failed"):  # the original
        engine.generate([bad])
    assert _idle(engine)
