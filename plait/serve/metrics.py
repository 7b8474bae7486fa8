"""GET /metrics: the engine's counters in the Prometheus text format (version 0.0.4).

Gauges: running and waiting requests (and the most ever running at once), KV slots held for
requests, held by the prefix cache, in use and free of the budget (also in blocks of
`block_tokens`), the budget, the prefix-cache hit rate, the last step's seconds. Counters: steps,
step seconds, generated / prompt / computed prompt / recomputed tokens, finished, cancelled and
failed requests, preemptions, HTTP responses by status. Values come from the engine thread's last
published snapshot (never a lock on the engine).
"""

from __future__ import annotations

from plait.serve.state import ServeState

_STATS = (
    ("steps", "counter", "engine steps (batched forwards)"),
    ("step_seconds", "counter", "seconds spent in engine steps"),
    ("last_step_seconds", "gauge", "seconds of the last engine step"),
    ("generated_tokens", "counter", "tokens generated"),
    ("prompt_tokens", "counter", "prompt tokens of admitted requests"),
    ("computed_prompt_tokens", "counter", "prompt tokens run through the model (rest: cache)"),
    ("finished_requests", "counter", "requests finished"),
    ("cancelled_requests", "counter", "requests cancelled (client gone)"),
    ("failed_requests", "counter", "requests that failed inside the engine (alone)"),
    ("preemptions", "counter", "requests or groups preempted (KV freed, recomputed later)"),
    ("recomputed_tokens", "counter", "generated tokens recomputed after a preemption"),
    ("peak_running", "gauge", "most requests running at once since start"),
)


def _metric(name: str, kind: str, help_: str, value: float, labels: str = "") -> list[str]:
    return [f"# HELP plait_{name} {help_}", f"# TYPE plait_{name} {kind}",
            f"plait_{name}{labels} {value:g}"]  # fmt: skip


def render_metrics(state: ServeState) -> str:
    snap = state.loop.snapshot
    lines: list[str] = []
    free = max(snap.kv_budget_tokens - snap.kv_held_tokens, 0)
    b = max(snap.kv_block_tokens, 1)
    gauges = (
        ("requests_running", "requests decoding or prefilling", snap.running),
        ("requests_waiting", "requests waiting for admission", snap.waiting),
        ("kv_request_tokens", "KV slots held for running requests", snap.kv_request_tokens),
        ("kv_cache_tokens", "KV slots of the prefix cache (held or not)", snap.kv_cache_tokens),
        ("kv_budget_tokens", "KV slots the engine may use", snap.kv_budget_tokens),
        ("kv_used_tokens", "KV slots in use (requests, groups, prefix cache)", snap.kv_held_tokens),
        ("kv_free_tokens", "KV slots of the budget not in use", free),
        ("kv_used_blocks", "KV in use, in blocks of block_tokens", -(-snap.kv_held_tokens // b)),
        ("kv_free_blocks", "KV of the budget not in use, in blocks", free // b),
        (
            "prefix_cache_hit_rate",
            "share of cacheable prompt tokens found cached",
            snap.cache_hit_rate,
        ),
    )
    for name, help_, value in gauges:
        lines += _metric(name, "gauge", help_, float(value))
    for key, kind, help_ in _STATS:
        name = key if kind == "gauge" else f"{key}_total"
        lines += _metric(name, kind, help_, float(snap.stats.get(key, 0)))
    lines += ["# HELP plait_http_responses_total HTTP responses by status",
              "# TYPE plait_http_responses_total counter"]  # fmt: skip
    for status, count in sorted(dict(state.responses).items()):
        lines.append(f'plait_http_responses_total{{status="{status}"}} {count}')
    return "\n".join(lines) + "\n"
