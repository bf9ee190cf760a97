"""A poison event stops the read models visibly, never silently and never by skipping it.

When a batch cannot be applied (an event the read models reject), ``catch_up`` in
``projections/runner.py`` retries one event at a time: every event before the failing one
is applied, and ``apply_one_or_record`` pins the one that fails on its own. Under the
runner's lock it tries that single event again in a savepoint; if it still fails, the
checkpoint stays where it is (exactly-once, never skip) and the error, the event's
position and since when are written to the checkpoint rows (migration 0104). The error is
logged once per distinct failure, not on every retry. The next batch that applies clears
the record in the same statement that moves the checkpoint (``projections/runner.py``).

``projection_failure`` reads the record back for ``/health/ready``, which then answers
"failing" with a 503.
"""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg
import msgspec

from projections.runner import (
    LIVE_SCHEMA,
    PROJECTIONS,
    RUNNER_LOCK,
    CheckpointsDiverged,
    apply_next_batch,
    quote_ident,
)

log = logging.getLogger("ticketing.projections")

MAX_ERROR_CHARS = 500

# The first event after the checkpoint in the runner's commit-safe order, without
# decoding it (the failure may be that it does not decode).
_NEXT_POSITION = """
SELECT position FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, position
LIMIT 1
"""


class ProjectionFailure(msgspec.Struct, frozen=True):
    """What stops the read models: the event that cannot be applied and why."""

    error: str
    position: int | None
    since: datetime


def describe(exc: BaseException) -> str:
    """One line naming the error, short enough for a health check and a log line."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 1] + "…"


async def apply_one_or_record(conn: asyncpg.Connection, *, schema: str = LIVE_SCHEMA) -> int | None:
    """Apply the next single event; if it cannot be applied, record why and return None.

    Returns 1 when the event was applied, 0 when there was none, None when it failed
    (recorded) or another runner holds the lock. Raises only if recording itself fails.
    """
    s = quote_ident(schema)
    names = [p.NAME for p in PROJECTIONS]
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RUNNER_LOCK):
            return None
        try:
            # nested in this transaction: a savepoint, so a failure leaves the lock held
            return await apply_next_batch(conn, 1, schema=schema, lock=False)
        except CheckpointsDiverged:
            raise
        except Exception as exc:
            error = describe(exc)
            before = await conn.fetchrow(
                f"SELECT transaction_id, position, last_error, failing_position "
                f"FROM {s}.projection_checkpoints WHERE name = ANY($1::text[]) "
                "ORDER BY transaction_id, position LIMIT 1",
                names,
            )
            position = None
            if before is not None:
                position = await conn.fetchval(
                    _NEXT_POSITION, before["transaction_id"], before["position"]
                )
            await conn.execute(
                f"UPDATE {s}.projection_checkpoints SET last_error = $1, failing_position = $2, "
                "failing_since = CASE WHEN failing_since IS NOT NULL "
                "AND failing_position IS NOT DISTINCT FROM $2 THEN failing_since ELSE now() END "
                "WHERE name = ANY($3::text[])",
                error,
                position,
                names,
            )
            if before is None or (before["last_error"], before["failing_position"]) != (
                error,
                position,
            ):
                log.error(
                    "projections stopped: the event at position %s cannot be applied (%s); "
                    "it is retried every tick and never skipped - fix the cause, the read "
                    "models then resume from it",
                    position,
                    error,
                    exc_info=exc,
                )
            return None


async def projection_failure(
    runner: asyncpg.Pool | asyncpg.Connection,
) -> ProjectionFailure | None:
    """The recorded failure that stops the live read models, if any."""
    row = await runner.fetchrow(
        "SELECT last_error, failing_position, failing_since FROM projection_checkpoints "
        "WHERE name = ANY($1::text[]) AND last_error IS NOT NULL "
        "ORDER BY failing_since LIMIT 1",
        [p.NAME for p in PROJECTIONS],
    )
    if row is None:
        return None
    return ProjectionFailure(
        error=row["last_error"], position=row["failing_position"], since=row["failing_since"]
    )
