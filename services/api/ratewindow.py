"""Counts per minute in Redis, as a sliding window (the rate limit and the login throttle).

Each key counts in one-minute windows; a count "over the last minute" is this window's
count plus the previous window's, weighted by how much of the last 60 s still falls in
it. Plain fixed windows let a client fit twice the limit around a minute boundary (the
limit just before it, the limit again just after); this estimate does not, and costs the
same single Redis round trip.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

WINDOW_S = 60


class Counted(NamedTuple):
    current: int  # in this minute's window
    previous: int  # in the last minute's
    elapsed: float  # seconds into this window

    def estimate(self) -> float:
        """The count over the last 60 s."""
        return self.current + self.previous * (1 - self.elapsed / WINDOW_S)

    def retry_after(self, limit: int) -> int:
        """Whole seconds (at least 1) until one more would keep the estimate within
        ``limit``, if nothing else is counted meanwhile."""
        room = limit - self.current - 1
        if room >= 0:  # within this window, once enough of the previous one has slid out
            wait = WINDOW_S * (1 - room / self.previous) - self.elapsed if self.previous else 0
        else:  # in the next window, where this window's count is the previous one
            left = WINDOW_S - self.elapsed
            share = 1 - (limit - 1) / self.current if self.current else 0
            wait = left + WINDOW_S * max(0.0, share)
        return max(1, math.ceil(wait - 1e-9))


def _keys(key: str, now: float) -> tuple[str, str, float]:
    window = int(now // WINDOW_S)
    return f"{key}:{window}", f"{key}:{window - 1}", now - window * WINDOW_S


async def count(redis: Any, key: str, now: float, *, add: bool) -> Counted:
    """Read ``key``'s counts at ``now`` (after counting one more when ``add``)."""
    current, previous, elapsed = _keys(key, now)
    pipe = redis.pipeline(transaction=False)
    if add:
        pipe.incr(current)
        pipe.expire(current, 2 * WINDOW_S)  # still needed as the next window's previous
    else:
        pipe.get(current)
    pipe.get(previous)
    got = await pipe.execute()
    return Counted(int(got[0] or 0), int(got[-1] or 0), elapsed)
