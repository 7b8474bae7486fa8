"""Solve one word problem with 3 Hogwild! workers of the bundled Qwen2.5-0.5B and print the result.

python examples/hogwild_solve.py --workers 3 --budgets 128 256
"""

from __future__ import annotations

import argparse

from plait.hogwild import HogwildConfig, StepEvent, stream
from plait.runtime.loading.loader import load_model

PROBLEM = (
    "Tom has 3 boxes with 12 pencils each. He gives 7 pencils to Ann and buys a pack of 10. "
    "How many pencils does he have now?"
)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 256])
    args = ap.parse_args()
    lm = load_model("qwen2.5-0.5b")
    config = HogwildConfig(workers=args.workers, budgets=tuple(args.budgets))
    result = None
    for event in stream(lm.model, lm.tokenizer, PROBLEM, config):
        if isinstance(event, StepEvent):  # a finished paragraph, merged into the shared history
            print(event.text.rstrip(), end="\n\n", flush=True)
        elif hasattr(event, "result"):
            result = event.result
    assert result is not None
    for snap in result.snapshots:
        print(
            f"budget {snap.budget}: answer {snap.answer!r} ({snap.answer_source}, {snap.passes} passes)"
        )
    print("expected: 39")


if __name__ == "__main__":
    main()
