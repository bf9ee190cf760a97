"""The worker's projection loop: apply new events as soon as a wake-up arrives.

One long-lived task per worker process listens on the wake channel (workers/waker.py)
and runs ``projections.runner.catch_up`` whenever a wake-up arrives, and at least every
``idle_s`` without one (so nothing depends on a wake-up arriving, and Redis being down
only slows projections to that pace). Runs start at least ``min_gap_s`` apart, so under a
stream of commands each batch carries what arrived meanwhile instead of one event at a
time. Several workers may run it at once: the runner's advisory lock applies each batch
exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from projections.runner import DEFAULT_BATCH, catch_up
from services import heartbeat

log = logging.getLogger("ticketing.projector")

# one catch-up stops after this many batches, so a long backlog does not starve shutdown
MAX_BATCHES_PER_RUN = 400


class Projector:
    def __init__(
        self,
        pool: asyncpg.Pool,
        redis_url: str,
        channel: str,
        *,
        batch_size: int = DEFAULT_BATCH,
        idle_s: float = 1.0,
        min_gap_s: float = 0.025,
    ) -> None:
        self.pool = pool
        self.redis_url = redis_url
        self.channel = channel
        self.batch_size = batch_size
        self.idle_s = idle_s
        self.min_gap_s = min_gap_s
        self._redis: aioredis.Redis | None = None
        self._pubsub: Any = None
        self._last_warning = 0.0
        self.runs = 0
        self.worker_id = heartbeat.new_worker_id()
        self._started_at = datetime.now(UTC)
        self._last_beat = float("-inf")

    async def run(self) -> None:
        """Until cancelled: catch up, then wait for a wake-up (or ``idle_s``)."""
        try:
            while True:
                started = time.monotonic()
                applied = 0
                try:
                    applied = await catch_up(
                        self.pool, self.batch_size, max_batches=MAX_BATCHES_PER_RUN
                    )
                    self.runs += 1
                    await self._beat()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("projection catch-up failed; retrying")
                    await asyncio.sleep(self.idle_s)
                if applied < MAX_BATCHES_PER_RUN * self.batch_size:  # else more is waiting
                    await self._wait_for_wake()
                gap = started + self.min_gap_s - time.monotonic()
                if gap > 0:
                    await asyncio.sleep(gap)
        finally:
            await self._close()
            with contextlib.suppress(Exception):  # the database may be gone: the row goes stale
                await asyncio.wait_for(heartbeat.forget(self.pool, self.worker_id), timeout=2)

    async def _beat(self) -> None:
        """Tell /health/ready this worker's loop runs (at most every heartbeat.BEAT_S)."""
        if time.monotonic() - self._last_beat < heartbeat.BEAT_S:
            return
        await heartbeat.beat(self.pool, self.worker_id, self._started_at)
        self._last_beat = time.monotonic()

    async def _wait_for_wake(self) -> None:
        pubsub = await self._subscribed()
        if pubsub is None:
            await asyncio.sleep(self.idle_s)
            return
        try:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.idle_s)
            while msg is not None:  # coalesce the wake-ups already queued
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._warn(f"wake channel lost ({exc}); catching up every {self.idle_s:g}s")
            await self._close()
            await asyncio.sleep(self.idle_s)

    async def _subscribed(self) -> Any:
        if self._pubsub is not None:
            return self._pubsub
        try:
            self._redis = aioredis.Redis.from_url(
                self.redis_url, socket_connect_timeout=1.0, health_check_interval=30
            )
            pubsub = self._redis.pubsub()
            await pubsub.subscribe(self.channel)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._warn(f"cannot subscribe to wake-ups ({exc}); catching up every {self.idle_s:g}s")
            await self._close()
            return None
        self._pubsub = pubsub
        return pubsub

    async def _close(self) -> None:
        pubsub, redis = self._pubsub, self._redis
        self._pubsub = self._redis = None
        for closing in (pubsub, redis):
            if closing is not None:
                try:
                    await closing.aclose()
                except Exception:  # already broken
                    log.debug("closing the wake channel failed", exc_info=True)

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning > 30:
            self._last_warning = now
            log.warning(message)
