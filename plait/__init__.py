"""plait: parallel LLM reasoning and straggler-resilient distributed training.

Subpackages: `plait.runtime` (model, shared-segment KV store, view attention, sampling),
`plait.hogwild` (Hogwild! Inference), `plait.threads` (ThreadWeaver), `plait.sgc`
(sequential gradient coding), `plait.eval` (datasets, answer checking, plots).
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
