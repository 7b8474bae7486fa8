"""Running the ThreadWeaver state machine: the engine protocol, the orchestrator, its backends.

- `engine_api`: `CompletionEngine` (a batch of token-id requests in, completions out), the stop
  rules every engine applies, and scripted engines for tests.
- `orchestrator`: the fork/join state machine over any engine (`Orchestrator`, `ThreadRun`).
- `openai_backend`: an engine over an OpenAI-compatible `/v1/completions` server.
- `runtime_backend`: an engine on plait's runtime (threads of a block decode as one batch). It is
  the one module here that imports torch; this package's `__init__` does not import it, so
  `plait.threads.inference` and the orchestrator stay torch-free (tests/test_imports.py).
"""

from plait.threads.inference.engine_api import (
    Completion,
    CompletionEngine,
    CompletionRequest,
    ScriptedEngine,
)
from plait.threads.inference.orchestrator import Orchestrator, OrchestratorConfig, ThreadRun

__all__ = [
    "Completion", "CompletionEngine", "CompletionRequest", "Orchestrator", "OrchestratorConfig",
    "ScriptedEngine", "ThreadRun",
]  # fmt: skip
