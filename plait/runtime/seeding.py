"""Deterministic seeding for scripts, tests and benchmarks.

`seed_everything` seeds Python's, NumPy's and torch's global generators (CUDA included) and
returns a fresh `torch.Generator` for code that takes an explicit generator.
"""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> torch.Generator:
    """Seed every global RNG with `seed`; optionally ask torch for deterministic kernels.

    Args:
        seed: a non-negative integer.
        deterministic: also call `torch.use_deterministic_algorithms(True, warn_only=True)`.

    Returns:
        A CPU `torch.Generator` seeded with `seed`.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)
