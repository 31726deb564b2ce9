"""How long to wait before trying a failing receiver again (pure)."""

from __future__ import annotations

import random

FIRST_S = 0.5


def backoff_s(attempt: int, cap_s: float, rng: random.Random | None = None) -> float:
    """Exponential from 0.5 s, doubled each attempt up to ``cap_s``, with "equal jitter"
    (half fixed, half random) so many subscriptions failing together do not retry in step."""
    ceiling = min(cap_s, FIRST_S * 2.0 ** min(attempt, 30))
    jitter = random.uniform(0, ceiling / 2) if rng is None else rng.uniform(0, ceiling / 2)
    return ceiling / 2 + jitter
