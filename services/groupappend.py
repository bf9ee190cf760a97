"""Group append: the appends of concurrent commands written by one statement.

Under load, each command's own append statement and commit cost the database more than
the rows they write, and the API a round trip each. ``GroupAppender`` queues the appends
of a process's commands; one writer takes whatever has queued while the previous
statement ran and writes it with ``EventStore.append_many``: one statement, one commit.
When nothing else is queued an append is written alone, as before, so a lone request
waits for nobody.

Each append still applies only if its stream is at its expected version; a conflict
fails that command alone (``ConcurrencyConflict``, which the command service retries)
and the others of the statement commit. Two appends to one stream never share a
statement: the later waits for the next. Appends with an idempotency key are not
grouped (the key and the events must commit or fail together). If a grouped statement
fails as a whole (nothing of it was written), its appends are retried one by one, so
each command gets its own error.
"""

from __future__ import annotations

import asyncio
from collections import deque

from services.eventstore import (
    ConcurrencyConflict,
    EventStore,
    PreparedAppend,
    RecordedEvent,
)

MAX_GROUP = 64  # appends per statement

_Waiting = tuple[PreparedAppend, "asyncio.Future[list[RecordedEvent]]"]


class GroupAppender:
    def __init__(self, store: EventStore, *, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.max_group = max(1, max_group)
        self._queue: deque[_Waiting] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.statements = 0  # statements written, for tests and benchmarks
        self.appends = 0

    async def append(self, prepared: PreparedAppend) -> list[RecordedEvent]:
        """Write ``prepared`` with whatever else is queued; its recorded events, or
        ConcurrencyConflict when its stream is not at its expected version."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[RecordedEvent]] = loop.create_future()
        self._queue.append((prepared, done))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_queued())
        # a caller that goes away before its append is taken appends nothing
        return await done

    async def _write_queued(self) -> None:
        taken: list[_Waiting] = []
        try:
            while self._queue:
                taken = self._take()
                if taken:
                    await self._write(taken)
                taken = []
        except BaseException as exc:  # cancelled (shutdown) or a bug: nobody waits forever
            for _, done in [*taken, *self._queue]:
                if not done.done():
                    done.set_exception(
                        exc if isinstance(exc, Exception) else ConnectionError("shutting down")
                    )
            self._queue.clear()
            raise

    def _take(self) -> list[_Waiting]:
        """The next group: at most one append per stream, callers still waiting."""
        group: list[_Waiting] = []
        later: list[_Waiting] = []
        streams: set[int] = set()
        while self._queue and len(group) < self.max_group:
            item = self._queue.popleft()
            if item[1].done():  # its caller went away
                continue
            if item[0].stream_id in streams:
                later.append(item)
                continue
            streams.add(item[0].stream_id)
            group.append(item)
        self._queue.extendleft(reversed(later))
        return group

    async def _write(self, group: list[_Waiting]) -> None:
        self.statements += 1
        self.appends += len(group)
        if len(group) == 1:
            await self._write_one(group[0])
            return
        try:
            results = await self.store.append_many([p for p, _ in group])
        except Exception:
            # nothing of the statement was written: each on its own, for its own error
            for item in group:
                await self._write_one(item)
            return
        for (_, done), recorded in zip(group, results, strict=True):
            if done.done():
                continue
            if recorded is None:
                done.set_exception(ConcurrencyConflict())
            else:
                done.set_result(recorded)

    async def _write_one(self, item: _Waiting) -> None:
        prepared, done = item
        try:
            recorded = await self.store.append_prepared(prepared)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(recorded)
