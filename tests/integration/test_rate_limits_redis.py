"""The rate limit and the login throttle over a minute boundary, on a real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.api.auth import NAME_FAILURE_FACTOR, SOURCE_FAILURE_FACTOR, LoginThrottle, RateLimiter
from services.api.errors import TooManyRequests

START = 1_800_000_000.0 - 1_800_000_000.0 % 60  # a minute boundary


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


async def test_a_burst_across_a_minute_boundary_cannot_reach_twice_the_limit(
    redis_client: Any,
) -> None:
    clock = Clock(START + 55)
    limiter = RateLimiter(10, prefix=f"test:rl:{uuid.uuid4().hex}", clock=clock)
    for _ in range(10):  # the whole limit in the last seconds of one minute
        await limiter.check(redis_client, "p")
    clock.at = START + 65  # just after the boundary (a fixed window would start afresh)
    with pytest.raises(TooManyRequests) as refused:
        await limiter.check(redis_client, "p")
    # the refused request counts too: 1 + 1 + 10 * (1 - x) <= 10 from x = 0.2 of the new
    # minute on: 12 s in, 7 s from now
    assert refused.value.headers == {"Retry-After": "7"}
    await limiter.check(redis_client, "q")  # another principal is not affected
    clock.at = START + 90  # half of the last minute slid out: room again
    for _ in range(3):
        await limiter.check(redis_client, "p")


async def test_failed_logins_are_throttled_over_the_last_minute(redis_client: Any) -> None:
    clock = Clock(START + 50)
    throttle = LoginThrottle(3, prefix=f"test:af:{uuid.uuid4().hex}", clock=clock)
    for _ in range(3):
        await throttle.check(redis_client, "guessed")
        await throttle.failed(redis_client, "guessed")
    with pytest.raises(TooManyRequests):
        await throttle.check(redis_client, "guessed")
    clock.at = START + 70  # the next minute: the three failures still weigh 5/6
    with pytest.raises(TooManyRequests) as refused:
        await throttle.check(redis_client, "guessed")
    # 3 * (1 - x) + 1 <= 3 from x = 1/3 of this minute: 20 s in, 10 s from now
    assert refused.value.headers == {"Retry-After": "10"}
    await throttle.check(redis_client, "someone else")
    clock.at = START + 80
    await throttle.check(redis_client, "guessed")


async def test_failed_logins_are_counted_per_address_so_strangers_cannot_lock_a_name_out(
    redis_client: Any,
) -> None:
    clock = Clock(START + 10)
    throttle = LoginThrottle(2, prefix=f"test:af:{uuid.uuid4().hex}", clock=clock)
    for _ in range(2):
        await throttle.failed(redis_client, "integration", "203.0.113.9")
    with pytest.raises(TooManyRequests):  # the guesser's address is stopped
        await throttle.check(redis_client, "integration", "203.0.113.9")
    await throttle.check(redis_client, "integration", "198.51.100.7")  # the integration is not
    # a name guessed from many addresses is stopped everywhere at NAME_FAILURE_FACTOR x 2
    for i in range(2 * NAME_FAILURE_FACTOR - 2):
        await throttle.failed(redis_client, "integration", f"10.0.{i}.1")
    with pytest.raises(TooManyRequests):
        await throttle.check(redis_client, "integration", "198.51.100.7")
    # an address trying made-up names is stopped at SOURCE_FAILURE_FACTOR x 2, before
    # any slow hash, whatever name it tries next
    for i in range(2 * SOURCE_FAILURE_FACTOR):
        await throttle.check(redis_client, f"made-up-{i}", "192.0.2.66")
        await throttle.failed(redis_client, f"made-up-{i}", "192.0.2.66")
    with pytest.raises(TooManyRequests):
        await throttle.check(redis_client, "yet-another", "192.0.2.66")
    await throttle.check(redis_client, "yet-another", "192.0.2.67")
