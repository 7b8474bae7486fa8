"""Running the ThreadWeaver state machine: the backend protocol, the orchestrator, its backends.

- `backend_api`: `CompletionBackend` (a batch of token-id requests in, completions out), the stop
  rules every backend applies, and scripted backends for tests.
- `orchestrator`: the fork/join state machine over any backend (`Orchestrator`, `ThreadRun`).
- `openai_backend`: a backend over an OpenAI-compatible `/v1/completions` server.
- `runtime_backend`: `EngineBackend`, on plait's engine (threads of a block decode as one batch). It is
  the one module here that imports torch; this package's `__init__` does not import it, so
  `plait.threads.inference` and the orchestrator stay torch-free (tests/test_imports.py).
"""

from plait.threads.inference.backend_api import (
    Completion,
    CompletionBackend,
    CompletionRequest,
    ScriptedBackend,
)
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig, ThreadRun

__all__ = [
    "Completion", "CompletionBackend", "CompletionRequest", "Orchestrator", "OrchestratorConfig",
    "ScriptedBackend", "ThreadRun",
]  # fmt: skip
