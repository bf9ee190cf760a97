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
       c.transaction_id AS cp_xid, c.position AS cp_pos, c.n
FROM (SELECT 1) one
LEFT JOIN (
    SELECT transaction_id, position FROM events
    ORDER BY transaction_id DESC, position DESC LIMIT 1
) h ON true
LEFT JOIN (
    SELECT transaction_id, position, count(*) OVER () AS n FROM projection_checkpoints
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
       c.cp_pos AS _rw_cp_pos, c.n AS _rw_n, q.*
FROM ({check}) c
LEFT JOIN LATERAL ({query}) q ON true
"""

FRESH_PREFIX = 5  # columns the check puts before the query's own
_NO_CHECK = (
    "SELECT NULL::xid8 AS head_xid, NULL::bigint AS head_pos, NULL::xid8 AS cp_xid, "
    "NULL::bigint AS cp_pos, NULL::bigint AS n"
)


# The same, but the query runs only when the read models moved since ``known`` (a
# checkpoint the caller has a result for): when the projections are current and still at
# ``known``, the lateral query's filter, which names only the check's columns, is a
# one-time filter (OFFSET 0 keeps the subquery from being flattened into a join) and the
# statement stops after the check. ``{n}``, ``{known_xid}`` and ``{known_pos}`` are the
# parameters holding the number of projections and the known checkpoint.
_UNLESS_UNCHANGED_SQL = """
SELECT c.head_xid AS _rw_head_xid, c.head_pos AS _rw_head_pos, c.cp_xid AS _rw_cp_xid,
       c.cp_pos AS _rw_cp_pos, c.n AS _rw_n, q.*
FROM ({check}) c
LEFT JOIN LATERAL (
    SELECT * FROM ({query}) q0
    WHERE NOT coalesce(c.n = {n} AND c.cp_xid = {known_xid}::xid8
                       AND c.cp_pos = {known_pos}::bigint
                       AND (c.head_xid, c.head_pos) <= (c.cp_xid, c.cp_pos), false)
    OFFSET 0
) q ON true
"""


class Versioned(NamedTuple):
    """A read-model query's rows after read-your-writes, and what they were read at."""

    rows: list[asyncpg.Record]  # FRESH_PREFIX check columns, then the query's own
    lag: int | None  # None when current; else ms still behind after the wait
    checkpoint: tuple[int, int] | None  # the read models' checkpoint when current, else None
    unchanged: bool  # current and still at ``known``: the query did not run, rows == []


async def fetch_versioned(
    pool: asyncpg.Pool,
    query: str,
    args: list[Any],
    wait_ms: int,
    *,
    known: tuple[int, int] | None = None,
) -> Versioned:
    """``fetch_consistent``, for callers that keep results: also returns the checkpoint the
    rows were read at, and skips the query when the read models are still at ``known``
    (the caller's earlier result is then exactly what the query would return: read models
    change only in the transactions that move their checkpoint)."""
    names = [p.NAME for p in PROJECTIONS]
    n = len(args)
    check = _HEAD_AND_CHECKPOINT_SQL.replace("$1::text[]", f"${n + 1}::text[]")
    if known is None:
        sql = _FRESH_SQL.format(check=check, query=query)
        rows = await pool.fetch(sql, *args, names)
    else:
        sql = _UNLESS_UNCHANGED_SQL.format(
            check=check, query=query, n=f"${n + 2}", known_xid=f"${n + 3}", known_pos=f"${n + 4}"
        )
        rows = await pool.fetch(sql, *args, names, len(names), known[0], known[1])
    first = rows[0]
    head: tuple[int, int] | None = None
    checkpoint = (0, 0)
    if first["_rw_head_xid"] is not None:
        head = (int(first["_rw_head_xid"]), int(first["_rw_head_pos"]))
        if first["_rw_n"] is not None and first["_rw_n"] >= len(names):
            checkpoint = (int(first["_rw_cp_xid"]), int(first["_rw_cp_pos"]))
    if head is None:  # an empty log: nothing to be behind, nothing worth keeping
        return Versioned(_matched(rows), None, None, False)
    if checkpoint >= head:
        if known is not None and checkpoint == known and first["_rw_n"] == len(names):
            return Versioned([], None, checkpoint, True)
        return Versioned(_matched(rows), None, checkpoint, False)
    lag = await _wait_until(pool, head, checkpoint, wait_ms)
    rows = await pool.fetch(_FRESH_SQL.format(check=_NO_CHECK, query=query), *args)
    return Versioned(_matched(rows), lag, None, False)


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
