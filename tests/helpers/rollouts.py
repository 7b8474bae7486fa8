"""Engine-produced trajectories with the log-probs the engine reported while sampling them.

- `engine_call`: one seeded call on a real `Engine` as a training unit + the reported log-probs;
- `fork_join_calls`: a fork/join-shaped trajectory of raw engine calls (first, 2 threads, join);
- `threadweaver_run`: a real `Orchestrator` run on `EngineBackend` (char format, scripted so a
  random tiny model writes a valid block) with `OrchestratorConfig(logprobs=True)`.
"""

from __future__ import annotations

from plait.runtime.engine import Engine, EngineRequest
from plait.runtime.model import DecoderLM
from plait.runtime.sampling import SamplingParams
from plait.threads.format.codec import ThreadFormat
from plait.threads.inference.backend_api import CompletionRequest
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig, ThreadRun
from plait.threads.inference.runtime_backend import EngineBackend
from plait.threads.training.trie import UnitTokens

Call = tuple[UnitTokens, list[float]]


def engine_call(
    engine: Engine, context: list[int], seed: int, max_tokens: int = 12, temperature: float = 0.9
) -> Call:
    """One engine call as a training unit (every completion token generated) and the engine's
    reported log-probs."""
    req = EngineRequest(
        prompt=context, max_tokens=max_tokens, logprobs=0, ignore_eos=True,
        sampling=SamplingParams(temperature=temperature, seed=seed),
    )  # fmt: skip
    engine.add(req)
    toks: list[int] = []
    lps: list[float] = []
    while engine.has_work:
        for o in engine.step():
            toks += o.token_ids
            lps += [lp.logprob for lp in o.logprobs]
    return UnitTokens(context=context, completion=toks, trained=[True] * len(toks)), lps


def fork_join_calls(engine: Engine, prompt: list[int], seed: int) -> list[Call]:
    """A fork/join-shaped trajectory: a first call, two threads continuing its output, a join."""
    first, lp1 = engine_call(engine, prompt, seed)
    base = prompt + first.completion
    threads = [engine_call(engine, base + [5, i], seed + i) for i in (1, 2)]
    join = engine_call(engine, base + threads[0][0].completion + threads[1][0].completion, seed + 3)
    return [(first, lp1), *threads, join]


FIRST = ("plan it\n<Parallel>\n<Outlines>\n<Outline>1: a</Outline>\n<Outline>2: bb</Outline>\n"
         "</Outlines>")  # fmt: skip


def threadweaver_run(
    model: DecoderLM, block_tokens: int, *, cache_output: bool, question: str = "6 x 7?"
) -> ThreadRun:
    """One orchestrator run (a sequential call, a block of 2 threads, the join, the end) on a
    private engine; the script forces valid text (still one real forward per token, and the
    engine reports each forced token's log-prob). The model's vocabulary must hold the char
    format's 265 ids."""
    f = ThreadFormat.char_level()

    def script(req: CompletionRequest) -> list[int]:
        if req.stop_token_ids == (f.tags.thread_end,):
            n = f.decode(req.context[-2:-1])
            return f.encode(f" body {n} of the thread\n</Thread>")
        if f.tags.parallel not in req.context:
            return f.encode(FIRST)
        return f.encode("</Parallel>\nso the answer is 42") + list(f.eos_ids)

    backend = EngineBackend.private(
        model=model, block_tokens=block_tokens, script=script, cache_output=cache_output
    )
    orch = Orchestrator(backend, f, OrchestratorConfig(logprobs=True))
    return orch.run_sync(f.encode(f"Q: {question} Think in parallel.\n"))
