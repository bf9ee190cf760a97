"""Read-your-writes for queries (SPEC section 6) and projection lag for operators.

A query first records the log head, then waits (bounded) until every projection's
checkpoint has reached it in commit-safe order ``(transaction_id, position)``; past the
bound it is answered anyway and the caller sets ``X-Projection-Lag-Ms``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

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


async def fetch_consistent(
    pool: asyncpg.Pool, query: str, args: list[Any], wait_ms: int
) -> tuple[list[asyncpg.Record], int | None]:
    """``pool.fetch(query, *args)`` after read-your-writes, in one round trip when current.

    Returns (rows, lag): each row starts with ``FRESH_PREFIX`` check columns, then the
    query's own; ``lag`` is None when the projections are current, else the remaining lag
    in ms after waiting ``wait_ms`` (the rows are then those of a fresh run of the query).
    """
    names = [p.NAME for p in PROJECTIONS]
    check = _HEAD_AND_CHECKPOINT_SQL.replace("$1::text[]", f"${len(args) + 1}::text[]")
    rows = await pool.fetch(_FRESH_SQL.format(check=check, query=query), *args, names)
    first = rows[0]
    if first["_rw_head_xid"] is None:
        fresh = True  # an empty log
    else:
        head = (int(first["_rw_head_xid"]), int(first["_rw_head_pos"]))
        checkpoint = (0, 0)
        if first["_rw_n"] is not None and first["_rw_n"] >= len(names):
            checkpoint = (int(first["_rw_cp_xid"]), int(first["_rw_cp_pos"]))
        fresh = checkpoint >= head
    lag = None
    if not fresh:
        lag = await _wait_until(pool, head, checkpoint, wait_ms)
        rows = await pool.fetch(_FRESH_SQL.format(check=_NO_CHECK, query=query), *args)
    # the query matched nothing: one row of check columns only
    if len(rows) == 1 and all(v is None for v in list(rows[0].values())[FRESH_PREFIX:]):
        rows = []
    return rows, lag


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
