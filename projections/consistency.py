"""Read-your-writes for queries (SPEC section 6) and projection lag for operators.

A query first records the log head, then waits (bounded) until every projection's
checkpoint has reached it in commit-safe order ``(transaction_id, position)``; past the
bound it is answered anyway and the caller sets ``X-Projection-Lag-Ms``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any, NamedTuple

import asyncpg

from projections.runner import PROJECTIONS
from services.eventstore import EventStore

# The projections' checkpoint is the smallest (transaction_id, position) pair among them.
_CHECKPOINT_SQL = """
SELECT transaction_id, position, count(*) OVER () AS n FROM projection_checkpoints
WHERE name = ANY($1::text[])
ORDER BY transaction_id, position
LIMIT 1
"""

# The log's head and the projections' checkpoint in one statement (one snapshot, one round
# trip): what a read-your-writes query costs when the projections are already current.
_HEAD_AND_CHECKPOINT_SQL = """
SELECT h.transaction_id AS head_xid, h.position AS head_pos,
       c.transaction_id AS cp_xid, c.position AS cp_pos, c.n, c.updated_at AS cp_at
FROM (SELECT 1) one
LEFT JOIN (
    SELECT transaction_id, position FROM events
    ORDER BY transaction_id DESC, position DESC LIMIT 1
) h ON true
LEFT JOIN (
    SELECT transaction_id, position, updated_at, count(*) OVER () AS n
    FROM projection_checkpoints
    WHERE name = ANY($1::text[])
    ORDER BY transaction_id, position
    LIMIT 1
) c ON true
"""

_OLDEST_UNAPPLIED = """
SELECT recorded_at FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
ORDER BY transaction_id, position
LIMIT 1
"""

_BEHIND = """
SELECT count(*) FROM (
    SELECT 1 FROM events
    WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
    LIMIT $3
) behind
"""

EVENTS_BEHIND_CAP = 1_000_000


async def projections_checkpoint(
    runner: asyncpg.Pool | asyncpg.Connection,
) -> tuple[int, int]:
    """The checkpoint every projection has reached (the smallest); (0, 0) if any is missing."""
    names = [p.NAME for p in PROJECTIONS]
    row = await runner.fetchrow(_CHECKPOINT_SQL, names)
    if row is None or row["n"] < len(names):
        return (0, 0)
    return (int(row["transaction_id"]), int(row["position"]))


async def _lag_ms(pool: asyncpg.Pool, checkpoint: tuple[int, int]) -> int:
    """Age of the oldest committed event not yet applied (at least 1 ms when behind)."""
    recorded = await pool.fetchval(_OLDEST_UNAPPLIED, checkpoint[0], checkpoint[1])
    if recorded is None:
        return 0
    return max(1, int((datetime.now(UTC) - recorded).total_seconds() * 1000))


async def wait_for_projections(pool: asyncpg.Pool, wait_ms: int) -> int | None:
    """Wait until projections include every event committed before this call.

    Returns None when they have; otherwise, after ``wait_ms``, the lag in milliseconds
    (for ``X-Projection-Lag-Ms``).
    """
    names = [p.NAME for p in PROJECTIONS]
    row = await pool.fetchrow(_HEAD_AND_CHECKPOINT_SQL, names)
    if row is None or row["head_xid"] is None:
        return None  # an empty log
    head = (int(row["head_xid"]), int(row["head_pos"]))
    checkpoint = (0, 0)
    if row["n"] is not None and row["n"] >= len(names):
        checkpoint = (int(row["cp_xid"]), int(row["cp_pos"]))
    if checkpoint >= head:
        return None
    return await _wait_until(pool, head, checkpoint, wait_ms)


async def _wait_until(
    pool: asyncpg.Pool, head: tuple[int, int], checkpoint: tuple[int, int], wait_ms: int
) -> int | None:
    deadline = time.monotonic() + max(0, wait_ms) / 1000
    delay = 0.002
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return await _lag_ms(pool, checkpoint) or 1
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
        checkpoint = await projections_checkpoint(pool)
        if checkpoint >= head:
            return None


# A read-model query and the read-your-writes check in one statement (one snapshot): when
# the projections have reached the log's head in that snapshot, its rows already include
# every event committed before the call. ``{query}`` is the caller's SELECT; ``{names}``
# the parameter holding the projection names.
_FRESH_SQL = """
SELECT c.head_xid AS _rw_head_xid, c.head_pos AS _rw_head_pos, c.cp_xid AS _rw_cp_xid,
       c.cp_pos AS _rw_cp_pos, c.n AS _rw_n, c.cp_at AS _rw_cp_at, q.*
FROM ({check}) c
LEFT JOIN LATERAL ({query}) q ON true
"""

FRESH_PREFIX = 6  # columns the check puts before the query's own

# The check alone, with the column names ``_version`` reads.
_CHECK_SQL = f"""
SELECT c.head_xid AS _rw_head_xid, c.head_pos AS _rw_head_pos, c.cp_xid AS _rw_cp_xid,
       c.cp_pos AS _rw_cp_pos, c.n AS _rw_n, c.cp_at AS _rw_cp_at
FROM ({_HEAD_AND_CHECKPOINT_SQL}) c
"""


# The read models' version: their checkpoint and when it was written.
ReadModelVersion = tuple[int, int, datetime]


class Versioned(NamedTuple):
    """A read-model query's rows after read-your-writes, and what they were read at."""

    rows: list[asyncpg.Record]  # FRESH_PREFIX check columns, then the query's own
    lag: int | None  # None when current; else ms still behind after the wait
    version: ReadModelVersion | None  # the read models' version when current, else None
    unchanged: bool  # current and still at ``known``: the query did not run, rows == []


async def unchanged_since(pool: asyncpg.Pool, known: ReadModelVersion) -> bool:
    """True when the projections are current (they include every event committed before
    this call) and still at ``known``: a result read at ``known`` is then exactly what the
    read models would answer now (they change only in the transactions that move their
    checkpoint; a rebuild stamps a new ``updated_at`` even at the same checkpoint).

    A constant statement of its own, so a kept result costs no planning of the caller's
    query (planning a filtered list each time cost PostgreSQL more than running it);
    ``VersionProbe`` shares it between concurrent callers."""
    return await _read_version(pool) == known


async def _read_version(pool: asyncpg.Pool) -> ReadModelVersion | None:
    row = await pool.fetchrow(_CHECK_SQL, [p.NAME for p in PROJECTIONS])
    return None if row is None else _version(row, len(PROJECTIONS))


class VersionProbe:
    """One process's read-model version checks, shared by the callers that wait together.

    A caller may take the result of a check only if the check's statement started after
    the caller arrived: its snapshot then holds every write committed before the call
    (read-your-writes). So callers that arrive while a check runs wait for it to end and
    share the next one, which starts at once then: under load, one statement answers
    every caller of one round trip instead of one statement each, for at most one more
    round trip of waiting. Checks run in tasks of their own, so a caller that goes away
    never cancels one that others wait for.
    """

    def __init__(self) -> None:
        self._running: asyncio.Future[ReadModelVersion | None] | None = None
        self._next: asyncio.Future[ReadModelVersion | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self.statements = 0  # checks run (for tests and metrics)

    async def version(self, pool: asyncpg.Pool) -> ReadModelVersion | None:
        """The read models' version when current, else None, as of after this call began."""
        if self._running is None:
            wanted = self._running = self._start(pool)
        else:  # started before we arrived: wait for the next
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
                self._next.add_done_callback(_retrieve)
            wanted = self._next
        return await asyncio.shield(wanted)

    def _start(
        self, pool: asyncpg.Pool, future: asyncio.Future[ReadModelVersion | None] | None = None
    ) -> asyncio.Future[ReadModelVersion | None]:
        loop = asyncio.get_running_loop()
        if future is None:
            future = loop.create_future()
            future.add_done_callback(_retrieve)
        self.statements += 1
        self._task = loop.create_task(self._run(pool, future))  # keep it referenced
        return future

    async def _run(self, pool: asyncpg.Pool, future: asyncio.Future[Any]) -> None:
        try:
            found = await _read_version(pool)
        except asyncio.CancelledError:  # shutting down: no more checks
            waiting, self._next, self._running = self._next, None, None
            for f in (future, waiting):
                if f is not None:
                    f.cancel()
            raise
        except Exception as exc:  # every waiter gets the error
            future.set_exception(exc)
        else:
            future.set_result(found)
        waiting, self._next = self._next, None
        self._running = self._start(pool, waiting) if waiting is not None else None


def _retrieve(future: asyncio.Future[Any]) -> None:
    # waiters that went away leave the error unread: mark it read, it was not lost
    if not future.cancelled():
        future.exception()


def _version(row: asyncpg.Record, projections: int) -> ReadModelVersion | None:
    """The version a check row saw, if the projections were current in its snapshot."""
    if row["_rw_head_xid"] is None or row["_rw_n"] is None or row["_rw_n"] < projections:
        return None
    head = (int(row["_rw_head_xid"]), int(row["_rw_head_pos"]))
    checkpoint = (int(row["_rw_cp_xid"]), int(row["_rw_cp_pos"]))
    if checkpoint < head:
        return None
    return (*checkpoint, row["_rw_cp_at"])


async def fetch_versioned(
    pool: asyncpg.Pool,
    query: str,
    args: list[Any],
    wait_ms: int,
    *,
    known: ReadModelVersion | None = None,
) -> Versioned:
    """``fetch_consistent``, for callers that keep results: also returns the read models'
    version the rows were read at, and skips the query when they are still at ``known``
    (the caller's earlier result is then exactly what the query would return: read models
    change only in the transactions that move their checkpoint)."""
    names = [p.NAME for p in PROJECTIONS]
    if known is not None and await unchanged_since(pool, known):
        return Versioned([], None, known, True)
    check = _HEAD_AND_CHECKPOINT_SQL.replace("$1::text[]", f"${len(args) + 1}::text[]")
    fresh_sql = _FRESH_SQL.format(check=check, query=query)
    rows = await pool.fetch(fresh_sql, *args, names)
    first = rows[0]
    if first["_rw_head_xid"] is None:  # an empty log: nothing to be behind, nothing to keep
        return Versioned(_matched(rows), None, None, False)
    version = _version(first, len(names))
    if version is not None:
        return Versioned(_matched(rows), None, version, False)
    head = (int(first["_rw_head_xid"]), int(first["_rw_head_pos"]))
    checkpoint = (0, 0)
    if first["_rw_n"] is not None and first["_rw_n"] >= len(names):
        checkpoint = (int(first["_rw_cp_xid"]), int(first["_rw_cp_pos"]))
    lag = await _wait_until(pool, head, checkpoint, wait_ms)
    # read again with the check: when the wait succeeded the rows come with their version
    rows = await pool.fetch(fresh_sql, *args, names)
    return Versioned(_matched(rows), lag, None if lag else _version(rows[0], len(names)), False)


def _matched(rows: list[asyncpg.Record]) -> list[asyncpg.Record]:
    # the query matched nothing (or did not run): one row of check columns only
    if len(rows) == 1 and all(v is None for v in list(rows[0].values())[FRESH_PREFIX:]):
        return []
    return rows


async def fetch_consistent(
    pool: asyncpg.Pool, query: str, args: list[Any], wait_ms: int
) -> tuple[list[asyncpg.Record], int | None]:
    """``pool.fetch(query, *args)`` after read-your-writes, in one round trip when current.

    Returns (rows, lag): each row starts with ``FRESH_PREFIX`` check columns, then the
    query's own; ``lag`` is None when the projections are current, else the remaining lag
    in ms after waiting ``wait_ms`` (the rows are then those of a fresh run of the query).
    """
    found = await fetch_versioned(pool, query, args, wait_ms)
    return found.rows, found.lag


async def projection_lag(pool: asyncpg.Pool) -> dict[str, Any]:
    """Events and milliseconds the projections are behind the log, for readiness/metrics.

    ``events_behind`` counts committed events past the checkpoint (capped at
    EVENTS_BEHIND_CAP); ``ms_behind`` is the age of the oldest of them (0 when caught up).
    """
    store = EventStore(pool)
    head = await store.head()
    names = [p.NAME for p in PROJECTIONS]
    rows = await pool.fetch(
        "SELECT name, transaction_id, position, updated_at FROM projection_checkpoints "
        "WHERE name = ANY($1::text[])",
        names,
    )
    per: dict[str, Any] = {}
    for r in rows:
        per[r["name"]] = {"position": r["position"], "updated_at": r["updated_at"]}
    checkpoint = await projections_checkpoint(pool)
    behind = 0
    if checkpoint < head:
        behind = int(await pool.fetchval(_BEHIND, checkpoint[0], checkpoint[1], EVENTS_BEHIND_CAP))
    ms = await _lag_ms(pool, checkpoint) if behind else 0
    return {
        "events_behind": behind,
        "ms_behind": ms,
        "head_position": head[1],
        "checkpoint_position": checkpoint[1],
        "projections": per,
    }
