"""The serving loop survives whatever the engine raises: a refused `add` of any exception type
fails that request's stream only; an exception escaping `Engine.step` fails the requests in the
engine at that moment and the next requests are served. Tiny random model, no HTTP."""

from __future__ import annotations

import asyncio

import pytest

from plait.runtime.engine import Engine, EngineConfig, EngineRequest
from plait.runtime.engine import scheduler as scheduler_module
from plait.runtime.sampling import Sampler, SamplingParams
from plait.serve.loop import EngineLoop
from tests.helpers.tiny import tiny_model


async def _tokens(loop: EngineLoop, req: EngineRequest) -> list[int]:
    out: list[int] = []
    async for o in loop.stream(req):
        out += o.token_ids  # type: ignore[union-attr]
    return out


def _req(salt: int) -> EngineRequest:
    return EngineRequest(prompt=[3 + salt, 9, 27, 81 % 120], max_tokens=6)


@pytest.fixture
def loop():
    m = tiny_model("llama", seed=4)
    engine = Engine(m, config=EngineConfig(kv_budget_tokens=512, block_tokens=8), eos_token_ids=())
    loop = EngineLoop(engine)
    loop.start()
    yield loop
    loop.stop(timeout=10)
    assert not loop.alive


def test_a_step_exception_fails_the_requests_in_flight_and_the_loop_goes_on(loop, monkeypatch):
    real, calls = loop.engine.step, {"n": 0}

    def step():  # noqa: ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise MemoryError("injected: escaped the engine")
        return real()

    monkeypatch.setattr(loop.engine, "step", step)

    async def main() -> list[object]:
        return await asyncio.gather(*(_tokens(loop, _req(i)) for i in range(3)),
                                    return_exceptions=True)  # fmt: skip

    first = asyncio.run(main())
    assert any(isinstance(r, RuntimeError) and "injected" in str(r) for r in first)
    assert loop.alive and not loop.engine.has_work and loop.engine.request_kv_tokens() == 0
    again = asyncio.run(main())
    assert all(isinstance(r, list) and len(r) == 6 for r in again)


def test_a_refused_add_of_any_type_fails_that_stream_only(loop, monkeypatch):
    real = loop.engine.add

    def add(request: EngineRequest) -> str:
        if request.max_tokens == 5:
            raise TypeError("injected: a refusal that is not a ValueError")
        return real(request)

    monkeypatch.setattr(loop.engine, "add", add)
    bad = EngineRequest(prompt=[5, 6, 7], max_tokens=5)

    async def main() -> list[object]:
        return await asyncio.gather(_tokens(loop, _req(1)), _tokens(loop, bad),
                                    _tokens(loop, _req(2)), return_exceptions=True)  # fmt: skip

    ok1, refused, ok2 = asyncio.run(main())
    assert isinstance(refused, TypeError) and len(ok1) == len(ok2) == 6  # type: ignore[arg-type]
    assert loop.alive


def test_a_request_failing_in_the_engine_raises_in_its_stream_only(loop, monkeypatch):
    class Faulty(Sampler):
        def __call__(self, logits, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204
            raise ValueError("injected")

    monkeypatch.setattr(scheduler_module, "Sampler",
                        lambda p: Faulty(p) if p[0].seed == 77 else Sampler(p))  # fmt: skip
    bad = EngineRequest(
        prompt=[5, 6, 7], max_tokens=6, sampling=SamplingParams(temperature=1, seed=77)
    )

    async def main() -> list[object]:
        return await asyncio.gather(_tokens(loop, _req(1)), _tokens(loop, bad),
                                    return_exceptions=True)  # fmt: skip

    alone = asyncio.run(main())[0]
    ok, failed = asyncio.run(main())
    assert isinstance(failed, ValueError) and "injected" in str(failed)  # the original
    assert ok == alone and len(ok) == 6  # type: ignore[arg-type]
    assert loop.engine.stats.failed_requests == 2 and loop.alive
