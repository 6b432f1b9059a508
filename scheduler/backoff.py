"""How long a failed delivery waits before its next try: exponential backoff with full jitter.

delay(n) = uniform(0, min(cap, base * 2**n)), or the platform's own "retry after" when it sent one
(never less). With base 2 s and cap 600 s the upper bounds run 2, 4, 8 … 512, 600, 600 s. Full
jitter spreads the retries of many rows that failed together (a rate-limit burst at 10:00) instead
of sending them back in one wave. A tiny pure function, so no retry library: the retries are rows in
the outbox, not loops in memory (tenacity and backoff retry a call in-process, which a crash loses).
"""

from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random,
                retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempt`-th failure (attempt counts from 1)."""
    bound = min(cap, base * (2 ** max(0, attempt - 1)))
    delay = rng.uniform(0, bound)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(delay, 0.05)
