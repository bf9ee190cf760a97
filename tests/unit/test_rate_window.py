"""The sliding-minute estimate behind the rate limit and the login throttle."""

from __future__ import annotations

import pytest

from services.api.ratewindow import Counted


def test_the_previous_minute_counts_by_the_share_of_it_still_within_the_last_60_s() -> None:
    assert Counted(current=3, previous=10, elapsed=0).estimate() == 13
    assert Counted(current=3, previous=10, elapsed=15).estimate() == pytest.approx(10.5)
    assert Counted(current=3, previous=10, elapsed=59.999).estimate() == pytest.approx(3, abs=1e-3)


@pytest.mark.parametrize(
    ("counted", "limit", "wait"),
    [
        # room in this window once enough of the previous one slid out: 1 + 10*(1-x) <= 5
        (Counted(current=0, previous=10, elapsed=0), 5, 36),
        (Counted(current=0, previous=10, elapsed=30), 5, 6),
        # nothing before: one more fits at once (never less than a second)
        (Counted(current=2, previous=0, elapsed=10), 5, 1),
        # this window is full: its end, then until its own count has slid far enough
        (Counted(current=5, previous=0, elapsed=50), 5, 10 + 12),
        (Counted(current=10, previous=7, elapsed=0), 10, 60 + 6),
    ],
)
def test_retry_after_is_when_one_more_would_fit(counted: Counted, limit: int, wait: int) -> None:
    assert counted.retry_after(limit) == wait
    # and it is right: one more at that time fits, a second earlier it would not have
    later = _slide(counted, wait)
    assert later.estimate() + 1 <= limit + 1e-9
    if wait > 1:
        assert _slide(counted, wait - 1).estimate() + 1 > limit


def _slide(c: Counted, seconds: float) -> Counted:
    """The counts ``seconds`` later with nothing counted meanwhile."""
    at = c.elapsed + seconds
    if at < 60:
        return Counted(c.current, c.previous, at)
    if at < 120:
        return Counted(0, c.current, at - 60)
    return Counted(0, 0, at - 120)
