"""One engine for every request: continuous batching over plait's runtime.

`Engine` (engine.py) takes `EngineRequest`s (requests.py) and multi-stream `StreamGroup`s
(groups.py), admits them under a KV budget and a row limit (scheduler.py), shares prompt prefixes
through a radix tree of KV segments (prefix_cache.py; finished sequences may stay in it:
`EngineRequest.cache_output`) in a free-list KV store (kv_pool.py), and turns tokens into text
with stop strings (detokenize.py). One request's failure ends that request only (isolation.py).
"""

from plait.runtime.engine.engine import Engine
from plait.runtime.engine.groups import StreamGroup
from plait.runtime.engine.isolation import raise_for_error
from plait.runtime.engine.kv_pool import KVPool
from plait.runtime.engine.prefix_cache import PrefixCache
from plait.runtime.engine.requests import (
    CapacityError,
    EngineRequest,
    EngineStats,
    GroupOutput,
    RequestError,
    SampleOutput,
    TokenLogprob,
)
from plait.runtime.engine.scheduler import EngineConfig

__all__ = [
    "CapacityError",
    "Engine",
    "EngineConfig",
    "EngineRequest",
    "EngineStats",
    "GroupOutput",
    "KVPool",
    "PrefixCache",
    "RequestError",
    "SampleOutput",
    "StreamGroup",
    "TokenLogprob",
    "raise_for_error",
]
