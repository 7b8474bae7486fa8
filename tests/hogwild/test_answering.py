"""Answer policies: the first worker's answer (the paper's rule) or a vote of the workers."""

from __future__ import annotations

import pytest
import torch

from plait.hogwild.answering import Answers, final_answer, placeholders
from plait.hogwild.config import HogwildConfig
from plait.hogwild.events import TokenEvent
from plait.hogwild.solve import solve, stream
from tests.helpers.toy import ToyTokenizer, toy_model

NAMES = ("Alice", "Bob", "Carol")


def test_first_answer_is_final() -> None:
    a = Answers("first", NAMES, "math")
    assert a.check(["x", "so \\boxed{5}", "\\boxed{7}"]) == [] and a.final == ("5", "worker:Bob")
    a.check(["\\boxed{9}", "", ""])
    assert a.final == ("5", "worker:Bob") and a.at_budget() == a.final


def test_a_copied_placeholder_box_is_no_answer() -> None:
    # measured on GSM8K (roles_after prompt): Bob wrote "give it as \\boxed{N}" and the run
    # stopped at pass 17 with the answer "N"
    prompt = "Write the result as \\boxed{N}, e.g. \\boxed{answer}; 2 + 2 = \\boxed{4}."
    skip = placeholders(prompt)
    assert skip == {"N", "answer"}  # boxes with a digit are worked answers, not placeholders
    assert placeholders("End with 'The answer is N'. The answer is 42.") == {"N"}
    for policy in ("first", "vote"):
        a = Answers(policy, NAMES[:2], "math", skip)
        assert a.check(["I will give it as \\boxed{N}.", "\\boxed{answer}"]) == []
        assert a.final is None and a.at_budget() is None
        a.check(["so \\boxed{N} is \\boxed{4}", ""])
        assert (a.final or a.tally() or ("",))[0] == "4"
    assert final_answer("\\boxed{7} then \\boxed{N}", "math", skip) == "7"


def test_vote_majority_ties_and_partial_votes() -> None:
    a = Answers("vote", NAMES, "math")
    assert a.at_budget() is None  # no vote yet: the finisher decides
    assert a.check(["\\boxed{7}", "thinking", ""]) == [0]
    assert a.final is None and a.at_budget() == ("7", "vote:1/1")
    assert a.check(["\\boxed{7}", "\\boxed{1,000}", ""]) == [1]
    assert a.at_budget() == ("7", "vote:1/2")  # a tie: the answer written first
    assert a.check(["", "", "\\boxed{1000}"]) == [2]
    assert a.final == ("1,000", "vote:2/3")  # "1,000" and "1000" are the same answer
    with pytest.raises(ValueError, match="answer policy"):
        Answers("loudest", NAMES, "math")


def test_voters_stop_and_the_majority_wins() -> None:
    tok = ToyTokenizer()
    scripts = {0: " \\boxed{5}", 1: " so 2 + 2 ... \\boxed{7}", 2: " 1 + 4 = \\boxed{5}"}
    queues = {w: tok.encode(s) + [tok.encode(" ")[0]] * 50 for w, s in scripts.items()}

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        return queues[worker].pop(0)

    cfg = HogwildConfig(workers=3, budgets=(60,), instructions="Vote.", answer_policy="vote",
                        finisher=False)  # fmt: skip
    events = list(stream(toy_model("llama", seed=2), tok, "Add.", cfg, choose=choose))
    result = next(e.result for e in events if type(e).__name__ == "DoneEvent")
    assert (result.answer, result.final.answer_source) == ("5", "vote:2/3")
    last_token = {w: max(e.pass_index for e in events if isinstance(e, TokenEvent) and e.worker == w)
                  for w in range(3)}  # fmt: skip
    # each worker wrote nothing after its answer closed
    for w, text in scripts.items():
        written = "".join(e.text for e in events if isinstance(e, TokenEvent) and e.worker == w)
        assert written.endswith(text.strip()[-3:]), (w, written)
    assert result.final.passes == max(last_token.values())  # the run ended with the last vote


def test_the_engine_skips_the_prompts_placeholder() -> None:
    tok = ToyTokenizer()
    queue = tok.encode(" as \\boxed{N} so 2 + 3 = \\boxed{5}") + [tok.encode(" ")[0]] * 60

    def choose(problem: int, worker: int, row: torch.Tensor) -> int:
        return queue.pop(0)

    cfg = HogwildConfig(workers=1, budgets=(80,), instructions="Answer as \\boxed{N}.",
                        finisher=False)  # fmt: skip
    result = solve(toy_model("llama", seed=2), tok, "Add.", cfg, choose=choose)
    assert (result.answer, result.final.answer_source) == ("5", "worker:Alice")
