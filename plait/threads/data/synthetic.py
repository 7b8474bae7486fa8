"""Synthetic ThreadWeaver trajectories on raw token ids (no tokenizer), for packing and RL tests.

`random_trajectory(rng, ...)` builds a random trajectory with several parallel blocks and returns
the (context, completion) units the orchestrator would issue for it, full-trajectory unit first,
with the loss mask of `plait.threads.training.units`: in the calls, orchestrator-inserted tokens
(thread headers, the joining newline) are untrained; on the full-trajectory unit every token is
trained (there the model writes headers and joins itself). The
token layout mirrors the real format: `... <Parallel> \\n <Outlines> ... </Outlines>` ends a
sequential unit; thread i's request appends `\\n <Thread> \\n i :`; its completion ends with
`\\n </Thread>`; the join writes thread 1 with its header, later threads as `<Thread> \\n i :`, then
`\\n`; the model itself continues with `</Parallel>`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from plait.runtime.model import DecoderLM
from plait.runtime.shapes import tiny
from plait.threads.training.trie import UnitTokens

# Reserved ids of the synthetic vocabulary; ordinary "text" tokens are >= FIRST_TEXT.
PAR, END_PAR, OUTS, END_OUTS, THR, END_THR, NL, COLON, EOS = range(1, 10)
DIGIT0 = 10  # ids 10..19 are the thread numbers 0..9
FIRST_TEXT = 20


def small_model(
    vocab: int,
    *,
    hidden: int = 64,
    layers: int = 2,
    max_position: int = 512,
    seed: int = 0,
    device: str = "cpu",
) -> DecoderLM:
    """A freshly initialised small Qwen2-style model (4 heads, 2 KV heads, tied embeddings) for
    synthetic training runs and packing benchmarks."""
    if hidden % 4:
        raise ValueError(f"hidden must be a multiple of the 4 attention heads, got {hidden}")
    cfg = tiny(
        "qwen2", vocab=vocab, layers=layers, heads=4, kv_heads=2, head_dim=hidden // 4,
        intermediate=4 * hidden, max_position=max_position, tie=True,
    )  # fmt: skip
    return DecoderLM.random(cfg, seed=seed, device=device)


@dataclass(slots=True, kw_only=True)
class RandomTrajectory:
    """A synthetic trajectory: its units and the per-block thread lengths (for metrics/tests)."""

    prompt: list[int]
    response: list[int]  # everything after the prompt, as merged by the orchestrator
    generated: list[bool]  # per response token: model-generated (False = orchestrator-inserted)
    units: list[UnitTokens]  # full-trajectory unit first, then the calls in issue order
    thread_lengths: list[list[int]]  # per block, per thread: completion tokens

    @property
    def calls(self) -> list[UnitTokens]:
        """The engine calls only (what RL trains on), without the full-trajectory unit."""
        return self.units[1:]


def _text(rng: random.Random, vocab: int, lo: int, hi: int) -> list[int]:
    return [rng.randrange(FIRST_TEXT, vocab) for _ in range(rng.randint(lo, hi))]


def random_trajectory(
    rng: random.Random,
    *,
    vocab: int = 64,
    blocks: int = 2,
    threads: tuple[int, int] = (2, 3),
    body: tuple[int, int] = (1, 6),
) -> RandomTrajectory:
    """A random trajectory with `blocks` parallel blocks of threads[0]..threads[1] threads each."""
    if vocab <= FIRST_TEXT:
        raise ValueError(f"vocab must exceed {FIRST_TEXT} (reserved ids), got {vocab}")
    if not 1 <= threads[0] <= threads[1] <= 9:
        raise ValueError(f"threads must satisfy 1 <= lo <= hi <= 9, got {threads}")
    prompt = _text(rng, vocab, 2, 5)
    resp: list[int] = []
    gen: list[bool] = []
    calls: list[UnitTokens] = []
    lengths: list[list[int]] = []

    def emit(tokens: list[int], generated: bool) -> None:
        resp.extend(tokens)
        gen.extend([generated] * len(tokens))

    for b in range(blocks):
        # 1) sequential call up to </Outlines> (starts with </Parallel> after a join)
        n = rng.randint(threads[0], threads[1])
        head = ([END_PAR, NL] if b else []) + _text(rng, vocab, 0, 3) + [PAR, NL, OUTS]
        for i in range(1, n + 1):
            head += _text(rng, vocab, 1, 3) + [DIGIT0 + i]
        head += [END_OUTS]
        calls.append(UnitTokens(context=prompt + resp, completion=head, name=f"seq{b}"))
        emit(head, True)
        # 2) one call per thread over the same context
        base = prompt + resp
        bodies = []
        for i in range(1, n + 1):
            header = [NL, THR, NL, DIGIT0 + i, COLON]
            comp = _text(rng, vocab, *body) + [NL, END_THR]
            calls.append(UnitTokens(context=base + header, completion=comp, name=f"b{b}t{i}"))
            bodies.append(comp)
        lengths.append([len(c) for c in bodies])
        # 3) join: thread 1 keeps "\n<Thread>\n1:", later ones touch as "</Thread><Thread>\ni:"
        for i, comp in enumerate(bodies, start=1):
            emit(
                [NL, THR, NL, DIGIT0 + i, COLON] if i == 1 else [THR, NL, DIGIT0 + i, COLON], False
            )
            emit(comp, True)
        emit([NL], False)
    tail = [END_PAR, NL] + _text(rng, vocab, 1, 4) + [EOS]
    calls.append(UnitTokens(context=prompt + resp, completion=tail, name="final"))
    emit(tail, True)
    full = UnitTokens(context=list(prompt), completion=list(resp), name="full")  # all trained
    return RandomTrajectory(
        prompt=prompt, response=resp, generated=gen, units=[full] + calls, thread_lengths=lengths
    )


# --------------------------------------------------------------------------------------------
# A task of independent sub-problems: sums of products, e.g. "3*7+4*5=?" (char-level format).


@dataclass(slots=True, kw_only=True)
class ProductSum:
    """One problem: sum of a_i * b_i with single-digit factors."""

    terms: list[tuple[int, int]]

    @property
    def prompt(self) -> str:
        return "+".join(f"{a}*{b}" for a, b in self.terms) + "=?\n"

    @property
    def answer(self) -> int:
        return sum(a * b for a, b in self.terms)

    def parts(self) -> list[object]:
        """The parallel trajectory: one block (a thread per product), then the sum."""
        from plait.threads.format.render import BlockSpec

        outl = [f"{a}*{b}" for a, b in self.terms]
        bodies = [f"{a}*{b}={a * b}" for a, b in self.terms]
        # the join: running sums, one two-operand addition per line
        acc, lines = self.terms[0][0] * self.terms[0][1], []
        for a, b in self.terms[1:]:
            lines.append(f"{acc}+{a * b}={acc + a * b}")
            acc += a * b
        return [
            BlockSpec(outlines=outl, threads=bodies),
            "\n" + "\n".join(lines) + f"\nA: {self.answer}",
        ]


def sample_problem(rng: random.Random, terms: tuple[int, int] = (2, 4)) -> ProductSum:
    n = rng.randint(*terms)
    return ProductSum(terms=[(rng.randint(2, 9), rng.randint(2, 9)) for _ in range(n)])


def problem_units(
    problem: ProductSum, fmt: object, *, header_loss: bool = True
) -> tuple[list[int], list[object]]:
    """(prompt + response ids with EOS, units full-trajectory first) as the orchestrator makes them.

    `header_loss` is passed to `extract_units` (False: no loss on headers and joins anywhere).
    """
    from plait.threads.format.render import encode_pieces
    from plait.threads.training.units import extract_units

    prompt = fmt.encode(problem.prompt)  # type: ignore[attr-defined]
    resp, gen = encode_pieces(fmt, problem.parts())  # type: ignore[arg-type]
    resp, gen = resp + list(fmt.eos_ids[:1]), gen + [True]  # type: ignore[attr-defined]
    tokens = prompt + resp
    units = extract_units(
        tokens,
        fmt,  # type: ignore[arg-type]
        prompt_len=len(prompt),
        inserted=[not g for g in gen],
        header_loss=header_loss,
    )
    return tokens, list(units)


def parse_answer(text: str) -> int | None:
    """The integer after the last "A:" of a decoded response, if any."""
    tail = text.rsplit("A:", 1)
    if len(tail) < 2:
        return None
    digits = ""
    for ch in tail[1].strip():
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else None
