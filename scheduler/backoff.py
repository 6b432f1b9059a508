"""How long a failed delivery waits before its next try: at once while the platform is healthy; while it is
failing, one quick retry, then exponential backoff with full jitter.

delay(1) = 0: the first retry goes at the row's next free rate slot (the per-target limits already
space it; most failures are one lost answer or one 5xx, and the idempotency key makes a resend of a
message that did arrive harmless). From the second failure on, delay(n) = uniform(0, min(cap,
base * 2**(n-2))), or the platform's own "retry after" when it sent one (never less): with base 2 s
and cap 600 s the upper bounds run 2, 4, 8 … 512, 600 s. Full jitter spreads the retries of many rows
that failed together (an outage at 10:00) instead of sending them back in one wave. A tiny pure
function, so no retry library: the retries are rows in the outbox, not loops in memory (tenacity and
backoff retry a call in-process, which a crash loses).

The backoff is for a platform that is failing (an outage, a bad deploy): then every row waits longer
and longer, and a storm of retries is avoided. One row's bad luck on a healthy platform (a lost
answer, a lone 502) says nothing about the next try, and waiting only leaves the row, and the
chat's unused rate windows, idle: so while fewer than half of the platform's last sends failed
(`Health`), every retry goes at the row's next free place in its windows, as the first does. Each
try still spends an attempt, so `max_attempts` bounds a row either way.
"""

from __future__ import annotations

import random
from collections import deque


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random,
                retry_after: float | None = None) -> float:
    """Seconds to wait after the `attempt`-th failure (attempt counts from 1)."""
    delay = 0.0 if attempt <= 1 else rng.uniform(0, min(cap, base * (2 ** (attempt - 2))))
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(delay, 0.05)


class Health:
    """The outcomes of one platform's last `size` sends (throttles are not outcomes): it is failing while at
    least half of them failed."""

    def __init__(self, size: int = 20) -> None:
        self._recent: deque[bool] = deque(maxlen=size)

    def record(self, failed: bool) -> None:
        self._recent.append(failed)

    @property
    def failing(self) -> bool:
        return 2 * sum(self._recent) >= (self._recent.maxlen or 1)
