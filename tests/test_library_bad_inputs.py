"""The library's bad-input table (issue 22): configs refuse wrong types and out-of-range values
where they enter, with a TypeError / ValueError that names the argument (the store, runner and
sgc codes have theirs in tests/runtime/test_store_guards.py and tests/sgc/test_codes.py)."""

from __future__ import annotations

import pytest

from plait.hogwild.config import HogwildConfig
from plait.runtime.sampling import SamplingParams
from plait.threads.inference.orchestrator import OrchestratorConfig

NAN, INF = float("nan"), float("inf")

CASES = [  # (config class, keyword arguments, error type, words of the message)
    (SamplingParams, dict(temperature=NAN), ValueError, "temperature must be a finite number"),
    (SamplingParams, dict(temperature=INF), ValueError, "temperature must be a finite number"),
    (SamplingParams, dict(temperature="0.5"), TypeError, "temperature must be a number"),
    (SamplingParams, dict(top_p=NAN), ValueError, "top_p"),
    (SamplingParams, dict(top_k=2.5), TypeError, "top_k must be an int"),
    (SamplingParams, dict(seed=1.5), TypeError, "seed must be an int"),
    (SamplingParams, dict(suppress_tokens="ab"), TypeError, "suppress_tokens"),
    (SamplingParams, dict(suppress_tokens=(-1,)), ValueError, "suppress_tokens"),
    (SamplingParams, dict(suppress_tokens=(1.0,)), TypeError, "suppress_tokens"),
    (HogwildConfig, dict(names="AB"), TypeError, "names must be a sequence of non-empty strings"),
    (HogwildConfig, dict(names=("A", "")), TypeError, "names must be"),
    (HogwildConfig, dict(instant="no"), TypeError, "instant must be True or False"),
    (HogwildConfig, dict(sequential=1, workers=1), TypeError, "sequential must be True or False"),
    (HogwildConfig, dict(step_capacity=64.5), ValueError, "step_capacity must be an integer"),
    (HogwildConfig, dict(interjection_every=1.5), ValueError, "interjection_every must be"),
    (HogwildConfig, dict(loop_penalty=NAN), ValueError, "loop_penalty must be a finite number"),
    (HogwildConfig, dict(loop_penalty="4"), TypeError, "loop_penalty must be a number"),
    (HogwildConfig, dict(loop_threshold=NAN), ValueError, "loop_threshold"),
    (HogwildConfig, dict(budgets=(10**9,)), ValueError, "each budget must be <= 1048576"),
    (HogwildConfig, dict(budgets=(2.5,)), ValueError, "each budget must be an integer"),
    (HogwildConfig, dict(finisher_max_tokens=10**9), ValueError, "finisher_max_tokens must be <="),
    (HogwildConfig, dict(finisher_max_tokens=8.0), ValueError, "finisher_max_tokens must be an integer"),
    (OrchestratorConfig, dict(top_p=0.0), ValueError, "top_p must be in (0, 1]"),
    (OrchestratorConfig, dict(top_p=NAN), ValueError, "top_p must be in (0, 1]"),
    (OrchestratorConfig, dict(temperature=NAN), ValueError, "temperature must be a finite"),
    (OrchestratorConfig, dict(temperature=-1.0), ValueError, "temperature must be a finite"),
    (OrchestratorConfig, dict(max_threads=2.0), TypeError, "max_threads must be an int"),
    (OrchestratorConfig, dict(max_blocks=True), TypeError, "max_blocks must be an int"),
    (OrchestratorConfig, dict(seed="1"), TypeError, "seed must be an int"),
    (OrchestratorConfig, dict(top_k=-1), ValueError, "top_k must be >= 0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("cls", "kwargs", "error", "words"),
    CASES,
    ids=[f"{c.__name__}-{next(iter(k))}-{i}" for i, (c, k, _, _) in enumerate(CASES)],
)
def test_configs_refuse_bad_arguments(cls, kwargs, error, words):
    with pytest.raises(error) as exc:
        cls(**kwargs)
    assert words in str(exc.value) and "\n" not in str(exc.value)


def test_the_good_values_still_pass():
    SamplingParams(temperature=0.7, top_p=0.9, top_k=5, seed=3, suppress_tokens=[1, 2])
    HogwildConfig(names=("A", "B"), instant=False, step_capacity=64, loop_penalty=0.0)
    OrchestratorConfig(temperature=1, top_p=1, seed=None, max_context_tokens=None)
