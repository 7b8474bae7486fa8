"""Parameter search: probe K uncoded rounds, simulate every scheme's grid on the probe, switch.

``grid(n, max_delay)`` lists candidate parameters per scheme (as the authors: W - 1 + B bounded
by ``max_delay``); ``probe_then_switch`` replays the probe on the virtual clock for each
candidate, picks the fastest, and runs it on the rest of the trace; ``oracle_best`` picks with
hindsight on the rest of the trace (an upper bound on what a search can achieve).
"""

from __future__ import annotations

from plait.sgc.bench import Arm, run_arm
from plait.sgc.schemes import sr_sgc_s
from plait.sgc.traces import Trace

LAMS = (1, 2, 3, 5, 7, 11, 15, 19, 23, 27, 31, 39, 47, 63)


def grid(n: int, max_delay: int = 4, lams: tuple[int, ...] = LAMS) -> list[tuple[str, dict]]:
    """Candidate (scheme, params) for uncoded, GC, SR-SGC and M-SGC."""
    lam_ok = [x for x in lams if x < n]
    out: list[tuple[str, dict]] = [("uncoded", {})]
    out += [("gc", dict(s=s)) for s in lam_ok]
    for B in range(1, max_delay + 1):
        for k in range(1, 4):
            W = k * B + 1
            out += [
                ("sr-sgc", dict(B=B, W=W, lam=lam)) for lam in lam_ok if sr_sgc_s(B, W, lam) < n
            ]
    for B in range(1, max_delay + 1):
        for W in range(B + 1, max_delay + 3):
            if max_delay >= W - 2 + B:
                out += [("m-sgc", dict(B=B, W=W, lam=lam)) for lam in lam_ok]
    return out


def _slice(trace: Trace, a: int, b: int) -> Trace:
    return Trace(delays=trace.delays[:, a:b], meta=dict(trace.meta, sliced=[a, b]))


def _best(
    cands, trace: Trace, n_jobs: int, rules: str, progress=None, **kw
) -> tuple[tuple[str, dict], dict]:
    scores = {}
    for name, p in cands:
        res = run_arm(Arm(scheme=name, params=p, rules=rules), trace, n_jobs, **kw)
        scores[(name, tuple(sorted(p.items())))] = res["runtime"]
        if progress is not None:
            progress()
    (name, items) = min(scores, key=lambda k: scores[k])
    return (name, dict(items)), {f"{k[0]}{dict(k[1])}": v for k, v in scores.items()}


def check_probe(probe: int, n_jobs: int, max_delay: int) -> None:
    """Raise ValueError unless a probe of ``probe`` rounds fits the search and the run."""
    if probe < max_delay + 2:
        raise ValueError(f"probe must be >= max_delay + 2 = {max_delay + 2} rounds, got {probe}")
    if probe >= n_jobs:
        raise ValueError(f"probe ({probe}) must be shorter than the run ({n_jobs} jobs)")


def probe_then_switch(
    trace: Trace,
    *,
    probe: int,
    n_jobs: int,
    max_delay: int = 4,
    rules: str = "plait",
    progress=None,
    lams: tuple[int, ...] = LAMS,
    **kw,
) -> dict:
    """Probe = ``probe`` uncoded rounds (they also complete ``probe`` jobs); choose on the probe,
    run the choice for the remaining jobs on the following rounds. Returns a dict of results."""
    check_probe(probe, n_jobs, max_delay)
    if trace.rounds < n_jobs + max_delay:
        raise ValueError(
            f"trace has {trace.rounds} rounds; need >= n_jobs + max_delay = {n_jobs + max_delay}"
        )
    cands = grid(trace.n, max_delay, lams)
    head = _slice(trace, 0, probe)
    probe_res = run_arm(Arm(scheme="uncoded", rules=rules), head, probe, **kw)
    choice, scores = _best(cands, head, probe - max_delay, rules, progress, **kw)
    rest = _slice(trace, probe, trace.rounds)
    after = run_arm(
        Arm(scheme=choice[0], params=choice[1], rules=rules), rest, n_jobs - probe, **kw
    )
    return dict(
        choice=dict(scheme=choice[0], **choice[1]),
        probe_time=probe_res["runtime"],
        rest_time=after["runtime"],
        total=probe_res["runtime"] + after["runtime"],
        probe_scores=scores,
    )


def oracle_best(
    trace: Trace,
    *,
    n_jobs: int,
    max_delay: int = 4,
    rules: str = "plait",
    progress=None,
    lams: tuple[int, ...] = LAMS,
    **kw,
) -> dict:
    """Best grid point with hindsight on the whole trace."""
    choice, scores = _best(grid(trace.n, max_delay, lams), trace, n_jobs, rules, progress, **kw)
    return dict(
        choice=dict(scheme=choice[0], **choice[1]), total=min(scores.values()), scores=scores
    )
