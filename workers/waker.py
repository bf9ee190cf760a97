"""Wake the projection worker after a command commits, without ever holding the command up.

``wake`` returns at once: the enqueue runs in a background task (one in flight per
process, coalescing the wake-ups that arrive meanwhile). The arq job id names a short
time slice and the job is deferred to that slice's end, so every event committed before
a wake is covered by a job that starts after it, and a burst of commands costs one job.
When Redis is down the error is swallowed and wake-ups pause briefly: the worker's
periodic catch-up applies the events anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from arq.connections import ArqRedis, RedisSettings

from services.eventstore import RecordedEvent
from workers.codec import QUEUE_NAME, job_deserializer, job_serializer

log = logging.getLogger("ticketing.waker")

PROJECT_JOB = "project"


class RedisWaker:
    """The ``services.commands.Waker`` that enqueues a de-duplicated arq ``project`` job."""

    def __init__(
        self,
        redis_url: str,
        *,
        queue_name: str = QUEUE_NAME,
        slice_s: float = 0.02,
        timeout_s: float = 0.25,
        pause_after_error_s: float = 1.0,
    ) -> None:
        rs = RedisSettings.from_dsn(redis_url)
        self.queue_name = queue_name
        self.slice_s = slice_s
        self.pause_after_error_s = pause_after_error_s
        self.redis = ArqRedis(
            host=rs.host if isinstance(rs.host, str) else "localhost",
            port=rs.port,
            unix_socket_path=rs.unix_socket_path,
            db=rs.database,
            username=rs.username,
            password=rs.password,
            ssl=rs.ssl,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            job_serializer=job_serializer,
            job_deserializer=job_deserializer,
            default_queue_name=queue_name,
        )
        self._task: asyncio.Task[None] | None = None
        self._again = False
        self._sent_slice = -1
        self._paused_until = 0.0
        self.sent = 0
        self.failures = 0

    async def wake(self, events: Sequence[RecordedEvent] = ()) -> None:
        if self._task is not None and not self._task.done():
            self._again = True
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._again = False
            await self._enqueue()
            if not self._again:
                return

    async def _enqueue(self) -> None:
        if time.monotonic() < self._paused_until:
            return
        now = time.time()
        current = math.floor(now / self.slice_s)
        if current == self._sent_slice:
            return  # this process already enqueued the job that starts after this slice
        start_at = datetime.fromtimestamp((current + 1) * self.slice_s, UTC)
        try:
            # arq's job keys are global, not per queue: name the queue in the id
            await self.redis.enqueue_job(
                PROJECT_JOB, _job_id=f"{self.queue_name}:project:{current}", _defer_until=start_at
            )
        except Exception as exc:  # Redis down or slow: never the command's problem
            self.failures += 1
            self._paused_until = time.monotonic() + self.pause_after_error_s
            log.warning("could not wake the worker (%s); the periodic catch-up will run", exc)
            return
        self._sent_slice = current
        self.sent += 1

    async def flush(self) -> None:
        """Wait for the wake-up in flight, if any (tests, shutdown)."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), timeout=5)

    async def close(self) -> None:
        await self.flush()
        with contextlib.suppress(Exception):
            await self.redis.aclose(close_connection_pool=True)
