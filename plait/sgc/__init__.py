"""plait.sgc: sequential gradient coding (GC, SR-SGC, M-SGC) on a virtual clock and on Ray.

Scheme logic is numpy-only; ``plait.sgc.training`` imports torch and ``plait.sgc.ray_backend``
imports ray, both lazily. See docs/sgc.md.
"""

from __future__ import annotations

from plait.sgc.codes import GradientCode
from plait.sgc.master import Master, MasterConfig, paper_rules, plait_rules
from plait.sgc.schemes import MiniTask, make_scheme
from plait.sgc.stragglers import BurstyModel, PerRoundModel
from plait.sgc.traces import Trace
from plait.sgc.virtual import VirtualBackend, VirtualConfig

__all__ = [
    "BurstyModel",
    "GradientCode",
    "Master",
    "MasterConfig",
    "MiniTask",
    "PerRoundModel",
    "Trace",
    "VirtualBackend",
    "VirtualConfig",
    "make_scheme",
    "paper_rules",
    "plait_rules",
]
