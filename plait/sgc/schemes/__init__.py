"""Schemes as pure logic: uncoded, ignore-stragglers, GC, SR-SGC, M-SGC, and a name registry."""

from __future__ import annotations

from plait.sgc.schemes.base import MiniTask, RoundPlan, Scheme
from plait.sgc.schemes.m_sgc import MSGC
from plait.sgc.schemes.simple import GC, IgnoreStragglers, Uncoded
from plait.sgc.schemes.sr_sgc import SRSGC, sr_sgc_s

SCHEMES = {"uncoded": Uncoded, "ignore": IgnoreStragglers, "gc": GC, "sr-sgc": SRSGC, "m-sgc": MSGC}


def make_scheme(name: str, n: int, n_jobs: int, **params) -> Scheme:
    """Build a scheme by name; ``params`` are its parameters (s for gc; B, W, lam for SGC)."""
    if name not in SCHEMES:
        raise ValueError(f"unknown scheme {name!r}; valid: {sorted(SCHEMES)}")
    return SCHEMES[name](n, n_jobs, **params)


__all__ = [
    "GC",
    "MSGC",
    "SRSGC",
    "SCHEMES",
    "IgnoreStragglers",
    "MiniTask",
    "RoundPlan",
    "Scheme",
    "Uncoded",
    "make_scheme",
    "sr_sgc_s",
]
