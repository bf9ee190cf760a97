"""Rebuild the read models from the event log without downtime (``ticketing projections rebuild``).

Live tables: the read models that queries and the runner use are the tables named in
``READ_MODEL_TABLES`` in the ``public`` schema (``LIVE_SCHEMA``), together with their
``projection_checkpoints``. A rebuild creates the same tables in a scratch schema
(running every ``projections/migrations/*.sql`` file with ``search_path`` set to it),
replays the whole log into them in bulk (fold in Python, COPY), catches them up, and
then, in one transaction holding the runner's lock, applies the last events and swaps
the tables: the live ones move out to a schema that is dropped, the new ones move into
``public``. Queries name tables unqualified, so they keep being served throughout (a
reader blocks only for the instant of the swap); the runner resumes from the new
tables' own checkpoint.

``build_into_schema`` runs the same replay into a schema of the caller's choosing and
stops there (``ticketing audit verify`` compares it with the live tables).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from importlib import resources
from typing import Any, cast

import asyncpg

from domain.events import MessagePosted
from projections import counts, tickets
from projections.fold import (
    LOG_COLUMNS,
    MESSAGE_COLUMNS,
    SUMMARY_COLUMNS,
    Folded,
    log_record,
    message_record,
    step,
    summary_record,
)
from projections.runner import (
    LIVE_SCHEMA,
    PROJECTIONS,
    RUNNER_LOCK,
    apply_next_batch,
    quote_ident,
)
from services.db import SERVER_SETTINGS
from services.eventstore import EventStore, RecordedEvent

READ_MODEL_TABLES = (
    "ticket_summaries",
    "ticket_messages",
    "ticket_logs",
    "category_counts",
    "agent_counts",
    "projection_checkpoints",
)
REBUILD_LOCK = 7_310_102  # session advisory lock: one rebuild at a time
READ_BATCH = 20_000
CATCH_UP_BATCH = 5_000

_READER = EventStore(cast(asyncpg.Pool, None))


def projection_migrations() -> list[tuple[str, str]]:
    folder = resources.files("projections.migrations")
    return sorted(
        (entry.name, entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create ``schema`` holding empty read-model tables (checkpoints at zero)."""
    q = quote_ident(schema)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA {q}")
        await conn.execute(f"SET LOCAL search_path TO {q}, pg_catalog")
        for _name, sql in projection_migrations():
            await conn.execute(sql)


async def _read_batches(
    dsn: str, out: asyncio.Queue[list[RecordedEvent] | BaseException]
) -> None:
    """Fetch the log in commit-safe order on a connection of its own (overlaps the fold)."""
    try:
        conn = await _connect(dsn)
        try:
            after = (0, 0)
            while True:
                events = await _READER.read_all(after=after, limit=READ_BATCH, conn=conn)
                await out.put(events)
                if not events:
                    return
                after = events[-1].checkpoint
        finally:
            await conn.close()
    except BaseException as exc:
        await out.put(exc)
        raise


async def _bulk_fill(conn: asyncpg.Connection, schema: str, dsn: str) -> int:
    """Replay the log into the (empty) tables of ``schema``; return events replayed.

    One connection reads ahead while this one folds and COPYs, so fetching, folding and
    writing overlap.
    """
    q = quote_ident(schema)
    states: dict[int, Folded] = {}
    after = (0, 0)
    total = 0
    batches: asyncio.Queue[list[RecordedEvent] | BaseException] = asyncio.Queue(maxsize=2)
    reader = asyncio.create_task(_read_batches(dsn, batches))
    while True:
        got = await batches.get()
        if isinstance(got, BaseException):
            raise got
        events = got
        if not events:
            break
        logs: list[tuple[Any, ...]] = []
        msgs: list[tuple[Any, ...]] = []
        for e in events:
            folded = step(states.get(e.stream_id), e)
            if folded is not None:
                states[e.stream_id] = folded
                if isinstance(e.event, MessagePosted):
                    msgs.append(message_record(e, e.event))
            logs.append(log_record(e, folded))
        await conn.copy_records_to_table(
            "ticket_logs", schema_name=schema, columns=LOG_COLUMNS, records=logs
        )
        if msgs:
            await conn.copy_records_to_table(
                "ticket_messages", schema_name=schema, columns=MESSAGE_COLUMNS, records=msgs
            )
        after = events[-1].checkpoint
        total += len(events)
    await reader
    async with conn.transaction():
        stage = f"rebuild_stage_{uuid.uuid4().hex[:8]}"
        await conn.execute(
            f"CREATE TEMP TABLE {stage} (LIKE {q}.ticket_summaries INCLUDING DEFAULTS) "
            "ON COMMIT DROP"
        )
        await conn.copy_records_to_table(
            stage,
            columns=SUMMARY_COLUMNS,
            records=(summary_record(f) for f in states.values()),
        )
        cols = ", ".join(SUMMARY_COLUMNS)
        cfg = tickets.TEXT_CONFIG
        # the same left fold as the incremental path: subject, description, then each
        # public message body in log order
        await conn.execute(
            f"INSERT INTO {q}.ticket_summaries ({cols}, search) "
            f"SELECT {cols}, to_tsvector('{cfg}', s.subject) || to_tsvector('{cfg}', s.description)"
            f" || coalesce((SELECT ticketing_tsvector_agg(to_tsvector('{cfg}', m.body)"
            f" ORDER BY m.position) FROM {q}.ticket_messages m"
            f" WHERE m.ticket_id = s.id AND m.visibility = 'public'), ''::tsvector)"
            f" FROM pg_temp.{stage} s ORDER BY s.id"
        )
        for sql in counts.rebuild_sql(q):
            await conn.execute(sql)
        await conn.execute(
            f"UPDATE {q}.projection_checkpoints SET transaction_id = $1::xid8, position = $2, "
            "updated_at = now() WHERE name = ANY($3::text[])",
            after[0],
            after[1],
            [p.NAME for p in PROJECTIONS],
        )
    await conn.execute(f"ANALYZE {q}.ticket_summaries")
    await conn.execute(f"ANALYZE {q}.ticket_logs")
    await conn.execute(f"ANALYZE {q}.ticket_messages")
    return total


async def _catch_up_schema(conn: asyncpg.Connection, schema: str) -> int:
    applied = 0
    while n := await apply_next_batch(conn, CATCH_UP_BATCH, schema=schema, lock=False):
        applied += n
    return applied


async def _connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn, server_settings=dict(SERVER_SETTINGS))


async def build_into_schema(dsn: str, schema: str) -> None:
    """Replay every event into read-model tables created in the new schema ``schema``."""
    conn = await _connect(dsn)
    try:
        await create_schema(conn, schema)
        await _bulk_fill(conn, schema, dsn)
        await _catch_up_schema(conn, schema)
    finally:
        await conn.close()


async def drop_schema(dsn: str, schema: str) -> None:
    conn = await _connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


async def rebuild_all(dsn: str) -> dict[str, Any]:
    """Replay the whole log into fresh tables and swap them in atomically.

    Returns ``{"events", "seconds", "events_per_s", "caught_up_during_swap"}``.
    """
    started = time.perf_counter()
    token = uuid.uuid4().hex[:10]
    new, old = f"projections_rebuild_{token}", f"projections_old_{token}"
    qn, qo, live = quote_ident(new), quote_ident(old), quote_ident(LIVE_SCHEMA)
    conn = await _connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK)
        try:
            await create_schema(conn, new)
            replayed = await _bulk_fill(conn, new, dsn)
            replayed += await _catch_up_schema(conn, new)
            async with conn.transaction():
                # the live runner is between batches (or waits for us) from here on
                await conn.execute("SELECT pg_advisory_xact_lock($1)", RUNNER_LOCK)
                final = await _catch_up_schema(conn, new)
                await conn.execute(f"CREATE SCHEMA {qo}")
                for table in READ_MODEL_TABLES:
                    await conn.execute(f"ALTER TABLE {live}.{table} SET SCHEMA {qo}")
                    await conn.execute(f"ALTER TABLE {qn}.{table} SET SCHEMA {live}")
            replayed += final
        finally:
            await conn.execute(f"DROP SCHEMA IF EXISTS {qo} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {qn} CASCADE")
            await conn.execute("SELECT pg_advisory_unlock($1)", REBUILD_LOCK)
    finally:
        await conn.close()
    seconds = time.perf_counter() - started
    return {
        "events": replayed,
        "seconds": round(seconds, 3),
        "events_per_s": round(replayed / seconds, 1) if seconds > 0 else None,
        "caught_up_during_swap": final,
    }
