"""Stage-1 data generation: turn a sequential reasoning trace into the parallel format.

Against any OpenAI-compatible chat endpoint (`ChatClient`):
1. `structure`: the trace is line-numbered (L1, L2, ...) and an LLM, in one multi-turn chat
   (steps, substeps, parallel groups, serialisation, self-check), marks parallel groups as
   `<Parallel><Thread>...</Thread> (range: La-Lb) ...</Parallel>`;
2. `extract_blocks`: deterministic cut of those line ranges; a block is skipped with a reason if it
   has < 2 threads, ranges overlap, leave gaps or fall outside the trace, or fail the savings
   filter (total chars - largest thread's chars < threshold);
3. `remove_references`: per thread i >= 2, minimal `{"src","dest"}` replacements that drop
   references to thread i-1, applied verbatim, with a shrink guard (retry once, then keep the
   original if the thread would shrink below `min_keep` of its size);
4. `outlines`: one call per block, conditioned on the preceding lines and the threads;
5. strict validation of the rendered result (`validate.py`).
The trace text is never regenerated; only the listed replacements touch it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx

from plait.threads.data.chat_turns import OUTLINE_PROMPT, REFERENCE_PROMPT, STRUCTURE_TURNS
from plait.threads.format.codec import ThreadFormat
from plait.threads.format.render import BlockSpec, render
from plait.threads.format.validate import validate
from plait.threads.inference.openai_backend import ServerError, read_answer


@dataclass(slots=True, kw_only=True)
class ChatClient:
    """Minimal `/v1/chat/completions` client."""

    base_url: str  # e.g. "http://127.0.0.1:8000/v1"
    model: str = "default"
    api_key: str | None = None
    temperature: float = 0.0
    timeout_s: float = 600.0
    calls: int = 0  # requests made

    def chat(self, messages: list[dict[str, str]]) -> str:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": self.temperature}
        url = f"{self.base_url.rstrip('/')}/chat/completions"
        try:
            resp = httpx.post(url, json=body, headers=headers, timeout=self.timeout_s)
        except httpx.TransportError as exc:
            raise ServerError(f"cannot reach {url} ({type(exc).__name__}: {exc})") from exc
        self.calls += 1
        message = read_answer(url, resp)["choices"][0].get("message")
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ServerError(f"{url} answered a choice without message content; is it a chat "
                              "completions endpoint?")  # fmt: skip
        return message["content"]


@dataclass(slots=True, kw_only=True)
class DatagenConfig:
    savings_threshold: int = 200  # min (total chars - largest thread chars) to keep a block
    allowed_lines: int = 5  # lines before a block shown as allowed context (step 3)
    forbidden_lines: int = 5  # first/last lines of the sibling shown as forbidden context
    outline_context_lines: int = 50  # lines before a block shown for outline generation
    min_keep: float = 0.5  # shrink guard: a rewritten thread keeps >= this fraction of chars
    max_outlines: int = 50

    def __post_init__(self) -> None:
        if not 0 < self.min_keep <= 1:
            raise ValueError(f"min_keep must be in (0, 1], got {self.min_keep}")
        if self.savings_threshold < 0:
            raise ValueError(f"savings_threshold must be >= 0, got {self.savings_threshold}")


@dataclass(slots=True, kw_only=True)
class TraceBlock:
    """A parallel block cut from the trace: 1-based inclusive line ranges per thread."""

    ranges: list[tuple[int, int]]
    threads: list[str]
    outlines: list[str] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class DatagenResult:
    text: str | None  # the parallel trace, or None if nothing survived
    blocks: int  # blocks kept
    skipped: list[str]  # reasons, one per skipped block or rejected edit
    chat_calls: int


def number_lines(trace: str) -> list[str]:
    """The trace's lines prefixed `L1: `, `L2: `, ..."""
    return [f"L{i}: {line}" for i, line in enumerate(trace.split("\n"), 1)]


_GROUP_RE = re.compile(r"<Parallel>(.*?)</Parallel>", re.S)
_RANGE_RE = re.compile(r"</Thread>\s*\(\s*range:\s*L(\d+)\s*-\s*L(\d+)\s*\)")


def parse_structure(answer: str) -> list[list[tuple[int, int]]]:
    """Line ranges of each `<Parallel>` group in the model's serialised structure."""
    return [[(int(a), int(b)) for a, b in _RANGE_RE.findall(g)] for g in _GROUP_RE.findall(answer)]


def structure(client: ChatClient, trace: str) -> list[list[tuple[int, int]]]:
    """Step 1: the multi-turn structure chat; returns the parallel groups' line ranges."""
    messages = [
        {"role": "user", "content": STRUCTURE_TURNS[0].format(trace="\n".join(number_lines(trace)))}
    ]
    answer = ""
    for k in range(len(STRUCTURE_TURNS)):
        if k:
            messages.append({"role": "user", "content": STRUCTURE_TURNS[k]})
        answer = client.chat(messages)
        messages.append({"role": "assistant", "content": answer})
    return parse_structure(answer)


def extract_blocks(
    lines: list[str], groups: list[list[tuple[int, int]]], config: DatagenConfig
) -> tuple[list[TraceBlock], list[str]]:
    """Step 2 (deterministic): blocks that pass the checks, and reasons for the others."""
    kept: list[TraceBlock] = []
    skipped: list[str] = []
    used_until = 0
    for g in sorted(groups, key=lambda g: min((a for a, _ in g), default=0)):
        name = f"group {g}"
        if len(g) < 2:
            skipped.append(f"{name}: fewer than 2 threads")
            continue
        if any(a > b or a < 1 or b > len(lines) for a, b in g):
            skipped.append(f"{name}: a range is empty or outside L1-L{len(lines)}")
            continue
        rs = sorted(g)
        if any(rs[i][1] >= rs[i + 1][0] for i in range(len(rs) - 1)) or rs[0][0] <= used_until:
            skipped.append(f"{name}: overlapping ranges")
            continue
        if any(rs[i][1] + 1 != rs[i + 1][0] for i in range(len(rs) - 1)):
            skipped.append(f"{name}: ranges leave a gap (lines would be lost)")
            continue
        threads = ["\n".join(lines[a - 1 : b]).strip() for a, b in rs]
        sizes = [len(t) for t in threads]
        if sum(sizes) - max(sizes) < config.savings_threshold:
            skipped.append(
                f"{name}: savings {sum(sizes) - max(sizes)} < {config.savings_threshold} chars"
            )
            continue
        if any(not t for t in threads):
            skipped.append(f"{name}: an empty thread")
            continue
        kept.append(TraceBlock(ranges=rs, threads=threads))
        used_until = rs[-1][1]
    return kept, skipped


def apply_replacements(text: str, edits: list[dict[str, Any]]) -> str:
    """Apply `{"src","dest"}` edits verbatim (first occurrence); edits whose src is absent are ignored."""
    for e in edits:
        src, dest = e.get("src"), e.get("dest", "")
        if isinstance(src, str) and src and isinstance(dest, str) and src in text:
            text = text.replace(src, dest, 1)
    return text


def _json_list(answer: str) -> list[Any] | None:
    m = re.search(r"\[.*\]", answer, re.S)
    try:
        val = json.loads(m.group(0)) if m else None
    except json.JSONDecodeError:
        return None
    return val if isinstance(val, list) else None


def remove_references(
    client: ChatClient, lines: list[str], block: TraceBlock, config: DatagenConfig
) -> list[str]:
    """Step 3: rewrite threads 2..n in place; returns reasons for rejected edits."""
    notes = []
    start = block.ranges[0][0]
    allowed = "\n".join(lines[max(0, start - 1 - config.allowed_lines) : start - 1])
    for i in range(1, len(block.threads)):
        prev = block.threads[i - 1].split("\n")
        n = config.forbidden_lines
        forbidden = "\n".join(prev[:n] + (["..."] + prev[-n:] if len(prev) > n else []))
        prompt = REFERENCE_PROMPT.format(
            allowed=allowed, forbidden=forbidden, thread=block.threads[i]
        )
        for attempt in range(2):
            edits = _json_list(client.chat([{"role": "user", "content": prompt}])) or []
            new = apply_replacements(block.threads[i], edits)
            if len(new) >= config.min_keep * len(block.threads[i]):
                block.threads[i] = new
                break
            notes.append(
                f"thread {i + 1} at L{start}: rewrite shrank it to {len(new)} chars (attempt {attempt + 1})"
            )
    return notes


def outlines(
    client: ChatClient, lines: list[str], block: TraceBlock, config: DatagenConfig
) -> list[str] | None:
    """Step 4: one outline per thread (None if the model did not return exactly that many)."""
    start = block.ranges[0][0]
    before = "\n".join(lines[max(0, start - 1 - config.outline_context_lines) : start - 1])
    threads = "\n".join(f"Thread {i}:\n{t}" for i, t in enumerate(block.threads, 1))
    prompt = OUTLINE_PROMPT.format(context=before, n=len(block.threads), threads=threads)
    for _ in range(2):
        answer = client.chat([{"role": "user", "content": prompt}])
        got = re.findall(r"^\s*(\d+)\s*[:.]\s*(.+?)\s*$", answer, re.M)
        if [int(k) for k, _ in got] == list(range(1, len(block.threads) + 1)):
            return [text for _, text in got]
    return None


def to_parallel(
    client: ChatClient,
    trace: str,
    config: DatagenConfig | None = None,
    fmt: ThreadFormat | None = None,
) -> DatagenResult:
    """Run steps 1-5 on one trace."""
    cfg, fmt = config or DatagenConfig(), fmt or ThreadFormat.char_level()
    lines = trace.split("\n")
    blocks, skipped = extract_blocks(lines, structure(client, trace), cfg)
    final: list[TraceBlock] = []
    for b in blocks:
        skipped += remove_references(client, lines, b, cfg)
        outs = outlines(client, lines, b, cfg)
        if outs is None:
            skipped.append(f"block at L{b.ranges[0][0]}: no usable outlines")
            continue
        b.outlines = outs
        final.append(b)
    parts: list[str | BlockSpec] = []
    cursor = 1
    for b in final:
        a, z = b.ranges[0][0], b.ranges[-1][1]
        before = "\n".join(lines[cursor - 1 : a - 1])
        parts.append(before + "\n" if before else "")
        parts.append(BlockSpec(outlines=b.outlines, threads=b.threads))
        parts.append("\n")
        cursor = z + 1
    parts.append("\n".join(lines[cursor - 1 :]))
    text = render(parts) if final else None
    if text is not None:
        errs = validate(fmt.encode(text), fmt, max_outlines=cfg.max_outlines, min_threads=2)
        if errs:
            skipped.append(f"rendered trace failed validation: {errs[0].code}: {errs[0].message}")
            text = None
    return DatagenResult(
        text=text, blocks=len(final) if text else 0, skipped=skipped, chat_calls=client.calls
    )
