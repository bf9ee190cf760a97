"""Group append: the appends of concurrent commands written by one statement.

Under load, each command's own append statement and commit cost the database more than
the rows they write, and the API a round trip each. ``GroupAppender`` queues the appends
of a process's commands and writes each group (services/coalesce.py) with
``EventStore.append_many``: one statement, one commit. When nothing else is queued an
append is written alone, as before, so a lone request waits for nobody.

Each append still applies only if its stream is at its expected version; a conflict
fails that command alone (``ConcurrencyConflict``, which the command service retries)
and the others of the statement commit. Two appends to one stream never share a
statement: the later waits for the next. Appends with an idempotency key are not
grouped (the key and the events must commit or fail together). If the server rejects a
grouped statement (a constraint, a deadlock, a bad value: nothing of it was written), its
appends are retried one by one, so each command gets its own error. Any other failure (a
lost connection, a timeout) leaves the outcome unknown, as for a single append: every
command of the group gets that error and nothing is retried, because the statement may
have committed and a retry would append the events twice.
"""

from __future__ import annotations

import asyncpg

from services.coalesce import Coalescer, Waiting, settle
from services.eventstore import (
    ConcurrencyConflict,
    EventStore,
    PreparedAppend,
    RecordedEvent,
)

MAX_GROUP = 64  # appends per statement

# Server-side rejections: the statement was rolled back, so retrying is safe.
_REJECTED = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.TransactionRollbackError,
    asyncpg.DataError,
)

_Waiting = Waiting[PreparedAppend, list[RecordedEvent]]


class GroupAppender(Coalescer[PreparedAppend, list[RecordedEvent]]):
    def __init__(self, store: EventStore, *, max_group: int = MAX_GROUP) -> None:
        super().__init__(max_group=max_group)
        self.store = store

    async def append(self, prepared: PreparedAppend) -> list[RecordedEvent]:
        """Write ``prepared`` with whatever else is queued; its recorded events, or
        ConcurrencyConflict when its stream is not at its expected version."""
        return await self.submit(prepared)

    def key(self, request: PreparedAppend) -> object:
        return request.stream_id

    async def serve(self, group: list[_Waiting]) -> None:
        if len(group) == 1:
            await self._write_one(group[0])
            return
        try:
            results = await self.store.append_many([p for p, _ in group])
        except _REJECTED:
            # nothing of the statement was written: each on its own, for its own error
            for item in group:
                await self._write_one(item)
            return
        except Exception as exc:  # the outcome is unknown: never write twice
            for _, done in group:
                settle(done, exc)
            return
        for (_, done), recorded in zip(group, results, strict=True):
            settle(done, ConcurrencyConflict() if recorded is None else recorded)

    async def _write_one(self, item: _Waiting) -> None:
        prepared, done = item
        try:
            settle(done, await self.store.append_prepared(prepared))
        except Exception as exc:
            settle(done, exc)
