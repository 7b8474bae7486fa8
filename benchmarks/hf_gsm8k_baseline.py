"""The plain-transformers GSM8K baseline, and plait's sequential decode compared to it problem by problem.

Loads the bundled model's HF-format directory (the converted cache: the same weights plait uses)
with `transformers.AutoModelForCausalLM` in bf16, generates greedily (batched, left-padded) for the
first N GSM8K test problems with the prompt "<question>\\n\\nSolve step by step and end with 'The
answer is N'." (plait's `answer_is_after` sequential variant renders the same chat text), scores
each output with plait's strict and lenient rules, and writes
`benchmarks/results/hf_gsm8k_baseline.json` (accuracy, per-problem answers and the generated
texts). With `--compare DIR`, per-problem agreement with plait's records and transcripts in DIR.

    python benchmarks/hf_gsm8k_baseline.py --limit 50 --max-new-tokens 512 --compare out/gsm8k/seq-answer_is_after
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, save  # noqa: E402

INSTRUCTION = "Solve step by step and end with 'The answer is N'."


def generate(path: Path, questions: list[str], max_new: int, batch: int) -> list[str]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16).eval()
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": f"{q}\n\n{INSTRUCTION}"}],
            tokenize=False,
            add_generation_prompt=True,
        )  # fmt: skip
        for q in questions
    ]
    outs: list[str] = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False,
                                 pad_token_id=tok.pad_token_id or tok.eos_token_id)  # fmt: skip
        outs += tok.batch_decode(gen[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        print(f"{len(outs)}/{len(texts)} done", file=sys.stderr)
    return outs


def main() -> None:
    from plait.eval.checking import is_correct
    from plait.eval.datasets import load
    from plait.eval.extraction import lenient, strict
    from plait.hogwild.answering import last_boxed
    from plait.runtime.loading.loader import load_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=50)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--compare", help="a plait eval output directory (sequential records)")
    args = ap.parse_args()
    problems = load("gsm8k", args.limit)
    path = load_model("qwen2.5-0.5b", dtype="bf16").path  # the converted HF-format directory
    t0 = time.perf_counter()
    outs = generate(path, [p.question for p in problems], args.max_new_tokens, args.batch)
    seconds = time.perf_counter() - t0
    rows = []
    for p, text in zip(problems, outs):
        box = last_boxed(text)
        s, le = strict(box, None), lenient(text, box, None)
        rows.append({"problem": p.id, "gold": p.answer, "strict": s.answer, "lenient": le.answer,
                     "rule_lenient": le.rule, "correct": is_correct(s.answer, p.answer),
                     "correct_lenient": is_correct(le.answer, p.answer),
                     "last_number_correct": is_correct(lenient(text, None, None).answer, p.answer)
                     if "answer is" not in text.lower() else None, "text": text})  # fmt: skip
    n = len(rows)
    summary = {k: sum(bool(r[k]) for r in rows) for k in ("correct", "correct_lenient")}
    print(f"transformers greedy bf16, {n} problems, {args.max_new_tokens} new tokens: "
          f"strict {summary['correct']}/{n}, lenient {summary['correct_lenient']}/{n}")  # fmt: skip
    payload = {"benchmark": "hf_gsm8k_baseline", "prompt": f"<question>\\n\\n{INSTRUCTION}",
               "problems": n, "max_new_tokens": args.max_new_tokens, "summary": summary,
               "seconds": seconds, "machine": machine(), "rows": rows}  # fmt: skip
    if args.compare:
        payload["compare"] = compare(Path(args.compare), rows, args.max_new_tokens)
    save("hf_gsm8k_baseline", payload)


def compare(out: Path, rows: list[dict], budget: int) -> dict:
    """Per problem: same lenient answer as plait's sequential run, same text prefix."""
    recs = {json.loads(x)["problem"]: json.loads(x) for x in (out / "records.jsonl").open()
            if json.loads(x)["budget"] == budget}  # fmt: skip
    texts = {json.loads(x)["problem"]: json.loads(x)["transcript"]
             for x in (out / "transcripts.jsonl").open()}  # fmt: skip
    same_answer = sum(recs[r["problem"]]["answer_lenient"] == r["lenient"] for r in rows)
    prefix = [len(_common_prefix(texts[r["problem"]], r["text"])) for r in rows]
    identical = sum(p >= min(200, len(r["text"])) for p, r in zip(prefix, rows))
    result = {"same_lenient_answer": same_answer, "first_200_chars_identical": identical,
              "common_prefix_chars": prefix}  # fmt: skip
    print(f"vs plait ({out}): same answer {same_answer}/{len(rows)}, "
          f"first 200 characters identical {identical}/{len(rows)}")  # fmt: skip
    return result


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


if __name__ == "__main__":
    main()
