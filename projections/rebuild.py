"""Rebuild the read models from the event log without downtime (``ticketing projections rebuild``).

Live tables: the read models that queries and the runner use are the tables named in
``READ_MODEL_TABLES`` in the ``public`` schema (``LIVE_SCHEMA``), together with their
``projection_checkpoints``. A rebuild creates the same tables in a scratch schema
(running every ``projections/migrations/*.sql`` file with ``search_path`` set to it),
replays the whole log into them in bulk (fold in Python, COPY; the database computes the
search vectors and the term index's rows from them), catches them up, and
then, in one transaction holding the runner's lock, takes every live and new table at
once (``_lock_for_swap``: never holding one while waiting for another, so it cannot
deadlock with a query), applies the last events and swaps the tables: the live ones move
out to a schema that is dropped, the new ones move into ``public``. Queries name tables
unqualified, so they keep being served throughout (a reader blocks only for the instant
of the swap); the runner resumes from the new tables' own checkpoint.

``build_into_schema`` runs the same replay into a schema of the caller's choosing and
stops there (``ticketing audit verify`` compares it with the live tables).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import logging
import time
import uuid
from importlib import resources
from typing import Any

import asyncpg
import msgspec

from domain.events import MessagePosted
from projections import counts, sla_queue, tickets
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
from services.eventstore import Metadata, RecordedEvent, decode_event

log = logging.getLogger("ticketing.rebuild")

READ_MODEL_TABLES = (
    "ticket_summaries",
    "ticket_search_terms",
    "ticket_messages",
    "ticket_logs",
    "category_counts",
    "agent_counts",
    "sla_first_response_queue",
    "projection_checkpoints",
)
REBUILD_LOCK = 7_310_102  # session advisory lock: one rebuild at a time
READ_BATCH = 20_000
SUMMARY_CHUNK = 25_000  # tickets per COPY (one short transaction each) in the bulk fill
CATCH_UP_BATCH = 5_000
# The swap's wait for all of the live and new tables at once (_lock_for_swap), and how
# many times it queues again: a deadlock-free swap under any read load, given up after
# about a minute of being in the way.
SWAP_LOCK_WAIT = "200ms"
SWAP_LOCK_ATTEMPTS = 300
INDEX_BUILD_MEMORY = "256MB"  # per index build, during a rebuild only


def projection_migrations() -> list[tuple[str, str]]:
    folder = resources.files("projections.migrations")
    return sorted(
        (entry.name, entry.read_text()) for entry in folder.iterdir() if entry.name.endswith(".sql")
    )


async def create_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Create ``schema`` holding empty read-model tables (checkpoints at zero)."""
    q = quote_ident(schema)
    async with conn.transaction():
        await conn.execute(f"CREATE SCHEMA {q}")
        await conn.execute(f"SET LOCAL search_path TO {q}, pg_catalog")
        for _name, sql in projection_migrations():
            await conn.execute(sql)


# EventStore.read_all's commit-safe order, with only what the fold and the log rows use
# (the hashes and recording times are left out: fewer values to decode per event).
_READ_SQL = """
SELECT position, transaction_id, stream_id, version, type, schema, data, metadata, occurred_at
FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, position
LIMIT $3
"""
_metadata = msgspec.json.Decoder(Metadata)


def _event(row: asyncpg.Record) -> RecordedEvent:
    position, xid, stream_id, version, type_, schema, data, meta, at = row
    return RecordedEvent(
        position=position,
        transaction_id=xid,
        stream_id=stream_id,
        version=version,
        type=type_,
        schema=schema,
        event=decode_event(type_, schema, data),
        metadata=_metadata.decode(meta),
        occurred_at=at,
        recorded_at=at,  # not read (not used by the read models)
        hash=b"",
        prev_hash=None,
        data_raw=data,
        metadata_raw=meta,
    )


async def _read_batches(dsn: str, out: asyncio.Queue[list[RecordedEvent] | BaseException]) -> None:
    """Fetch the log in commit-safe order on a connection of its own (overlaps the fold)."""
    try:
        conn = await _connect(dsn)
        try:
            after = (0, 0)
            while True:
                events = [_event(r) for r in await conn.fetch(_READ_SQL, *after, READ_BATCH)]
                await out.put(events)
                if not events:
                    return
                after = events[-1].checkpoint
        finally:
            await conn.close()
    except BaseException as exc:
        await out.put(exc)
        raise


async def _write_batches(
    dsn: str, schema: str, rows: asyncio.Queue[tuple[list[Any], list[Any]] | None]
) -> None:
    """COPY log and message rows on a connection of its own, so the database ingests one
    batch while Python folds the next."""
    conn = await _connect(dsn, bulk=True)
    try:
        while (got := await rows.get()) is not None:
            logs, msgs = got
            await conn.copy_records_to_table(
                "ticket_logs", schema_name=schema, columns=LOG_COLUMNS, records=logs
            )
            if msgs:
                await conn.copy_records_to_table(
                    "ticket_messages", schema_name=schema, columns=MESSAGE_COLUMNS, records=msgs
                )
    finally:
        await conn.close()


_SECONDARY_INDEXES = """
SELECT i.tablename, i.indexname, i.indexdef FROM pg_indexes i
WHERE i.schemaname = $1
  AND NOT EXISTS (
      SELECT 1 FROM pg_constraint c
      WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass
  )
ORDER BY i.indexname
"""


# Tables whose indexes are kept while the log is replayed: their rows are COPYed while
# Python folds (the bottleneck then), so the database maintains these indexes in time it
# would otherwise spend waiting, instead of building them later on the critical path.
KEEP_INDEXES_DURING_LOAD = frozenset({"ticket_logs", "ticket_messages"})


async def _drop_secondary_indexes(conn: asyncpg.Connection, schema: str) -> list[tuple[str, str]]:
    """Drop the indexes that back no constraint; return (table, definition) to recreate.

    Loading into bare tables and building each index once afterwards is several times
    faster than maintaining every index row by row during the load.
    """
    rows = [
        r
        for r in await conn.fetch(_SECONDARY_INDEXES, schema)
        # a full-text index is built far faster at once than entry by entry
        if r["tablename"] not in KEEP_INDEXES_DURING_LOAD or " USING gin " in r["indexdef"]
    ]
    q = quote_ident(schema)
    for r in rows:
        await conn.execute(f"DROP INDEX {q}.{quote_ident(r['indexname'])}")
    return [(r["tablename"], r["indexdef"]) for r in rows]


async def _run_parallel(dsn: str, chains: list[list[str]], parallel: int = 2) -> None:
    """Run index builds and ANALYZEs on a few connections at once (CREATE INDEX locks
    out only writers, so several can build on one table together).

    Each chain runs in order on one connection; chains are taken in the order given. The
    term index's ANALYZE goes in the chain after its build, not beside it: the first
    scans of freshly loaded rows set their hint bits, and an ANALYZE beside the build
    took as long as the build (7.5 and 7.1 s at a million tickets); after it, 0.3 s.
    """
    todo = [list(c) for c in chains if c]

    async def builder() -> None:
        conn = await _connect(dsn, bulk=True)
        try:
            await conn.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
            while todo:
                for sql in todo.pop(0):
                    await conn.execute(sql)
        finally:
            await conn.close()

    await asyncio.gather(*(builder() for _ in range(max(1, min(parallel, len(todo))))))


async def _put_unless_failed(
    queue: asyncio.Queue[Any], item: Any, consumer: asyncio.Task[None]
) -> None:
    """Queue ``item``; if the consumer dies meanwhile, raise its error instead of waiting."""
    put = asyncio.ensure_future(queue.put(item))
    await asyncio.wait({put, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if not put.done():
        put.cancel()
        await consumer  # raises why it stopped
        raise RuntimeError("the rebuild's writer stopped early")


async def _bulk_fill(
    conn: asyncpg.Connection, schema: str, dsn: str, timings: dict[str, float] | None = None
) -> int:
    """Replay the log into the (empty) tables of ``schema``; return events replayed.

    One connection reads ahead, this one folds, another COPYs the rows, so fetching,
    folding and writing overlap; secondary indexes are built once at the end.
    """
    q = quote_ident(schema)
    timings = timings if timings is not None else {}
    mark = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        timings[name] = round(now - mark, 3)
        mark = now

    indexes = await _drop_secondary_indexes(conn, schema)

    def finish(table: str, one_chain: bool = False) -> list[list[str]]:
        """Chains that build ``table``'s indexes, one each, and then analyze it (all in
        one chain with ``one_chain``: the ANALYZE starts only once they are built)."""
        builds = [d for t, d in indexes if t == table]
        analyze = f"ANALYZE {q}.{quote_ident(table)}"
        if one_chain:
            return [[*builds, analyze]]
        return [[d] for d in builds] + [[analyze]]

    states: dict[int, Folded] = {}
    after = (0, 0)
    total = 0
    batches: asyncio.Queue[list[RecordedEvent] | BaseException] = asyncio.Queue(maxsize=2)
    rows: asyncio.Queue[tuple[list[Any], list[Any]] | None] = asyncio.Queue(maxsize=2)
    reader = asyncio.create_task(_read_batches(dsn, batches))
    writer = asyncio.create_task(_write_batches(dsn, schema, rows))
    side: asyncio.Task[None] | None = None
    # Every ticket's fold stays alive until the summaries are written: with the cyclic
    # collector running, each of its passes walks all of them again (folding 200k raised
    # tickets took about 2.1-2.6 s with it, 0.2-0.4 s without), and the first pass after
    # re-enabling it walks every object allocated meanwhile. Nothing built here is cyclic
    # garbage, so pause it until the folds are freed.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
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
            await _put_unless_failed(rows, (logs, msgs), writer)
            after = events[-1].checkpoint
            total += len(events)
        del events, got
        await _put_unless_failed(rows, None, writer)
        await writer
        await reader
        lap("read_fold_copy_s")
        # the messages and the log kept their indexes (KEEP_INDEXES_DURING_LOAD); the
        # summaries' trigger looks message bodies up by ticket, so analyze them first
        await _run_parallel(dsn, finish("ticket_messages"))
        side = asyncio.create_task(_run_parallel(dsn, finish("ticket_logs"), parallel=1))
        await _fill_summaries(conn, dsn, schema, states, after)
        lap("summaries_s")
        # The largest index (the term index, then its ANALYZE) on one builder, the
        # summaries' indexes on the other and then on both, so they finish together;
        # meanwhile this process frees the folds.
        last = asyncio.create_task(
            _run_parallel(
                dsn,
                finish("ticket_search_terms", one_chain=True)
                + finish("ticket_summaries")
                + finish(sla_queue.TABLE),
            )
        )
        while states:  # in slices, so the builders get going meanwhile
            for _ in range(min(20_000, len(states))):
                states.popitem()
            await asyncio.sleep(0)
        await last
        await side
        lap("indexes_analyze_s")
    finally:
        states.clear()
        if gc_was_enabled:
            gc.enable()
        for task in (reader, writer, side):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
    return total


def _search_trigger_sql(q: str) -> tuple[str, str, str]:
    """(create function, create trigger, drop both) for the bulk fill of the summaries.

    The trigger computes each row's ``search`` vector as it is COPYed in: the same left
    fold as the incremental path (subject, description, then each public message body
    in log order), without writing every row twice through a staging table.
    """
    cfg = tickets.TEXT_CONFIG
    fn = f"{q}.rebuild_fill_search"
    create_fn = (
        f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$ BEGIN "
        f"NEW.search := to_tsvector('{cfg}', NEW.subject) || to_tsvector('{cfg}', NEW.description);"
        " IF NEW.public_message_count > 0 THEN"
        f" NEW.search := NEW.search || coalesce((SELECT {q}.ticketing_tsvector_agg("
        f"to_tsvector('{cfg}', m.body) ORDER BY m.position) FROM {q}.ticket_messages m"
        " WHERE m.ticket_id = NEW.id AND m.visibility = 'public'), ''::tsvector);"
        " END IF; RETURN NEW; END $fn$"
    )
    create_trigger = (
        f"CREATE TRIGGER rebuild_fill_search BEFORE INSERT ON {q}.ticket_summaries"
        f" FOR EACH ROW EXECUTE FUNCTION {fn}()"
    )
    drop = f"DROP TRIGGER rebuild_fill_search ON {q}.ticket_summaries; DROP FUNCTION {fn}()"
    return create_fn, create_trigger, drop


async def _fill_summaries(
    conn: asyncpg.Connection,
    dsn: str,
    schema: str,
    states: dict[int, Folded],
    after: tuple[int, int],
    parallel: int = 2,
) -> None:
    """One row per ticket (with its full-text vector), the term index's rows, the
    first-response work list, the counts and the checkpoints.

    The tickets go in chunks of SUMMARY_CHUNK ids, each COPY its own short transaction (a
    long one would hold back every commit-safe reader of the server), on ``parallel``
    connections: while the database computes one chunk's vectors (the trigger) and then
    its term rows, Python encodes the next chunk for another connection. The scratch
    schema is not live yet: a failure here leaves it to be dropped.
    """
    q = quote_ident(schema)
    create_fn, create_trigger, drop = _search_trigger_sql(q)
    await conn.execute(create_fn)
    await conn.execute(create_trigger)
    ids = sorted(states)
    todo = collections.deque(ids[i : i + SUMMARY_CHUNK] for i in range(0, len(ids), SUMMARY_CHUNK))

    async def copy_chunks() -> None:
        c = await _connect(dsn, bulk=True)
        try:
            while todo:
                part = todo.popleft()
                await c.copy_records_to_table(
                    "ticket_summaries",
                    schema_name=schema,
                    columns=SUMMARY_COLUMNS,
                    records=(summary_record(states[tid]) for tid in part),
                )
                # ids are sorted: this range holds this chunk's tickets and no other's
                chunk = f"BETWEEN {part[0]} AND {part[-1]}"
                await c.execute(tickets.term_rows_sql(q, f"s.id {chunk}"))
                await c.execute(sla_queue.rebuild_sql(q, f"id {chunk}"))
        finally:
            await c.close()

    try:
        async with asyncio.TaskGroup() as group:  # one failing chunk stops the others
            for _ in range(max(1, min(parallel, len(todo)))):
                group.create_task(copy_chunks())
    except ExceptionGroup as failed:  # report the first cause, as a plain await would
        raise failed.exceptions[0] from failed
    async with conn.transaction():
        await conn.execute(drop)
        for sql in counts.rebuild_sql(q):
            await conn.execute(sql)
        await conn.execute(
            f"UPDATE {q}.projection_checkpoints SET transaction_id = $1::xid8, position = $2, "
            "updated_at = now() WHERE name = ANY($3::text[])",
            after[0],
            after[1],
            [p.NAME for p in PROJECTIONS],
        )


async def _catch_up_schema(conn: asyncpg.Connection, schema: str) -> int:
    applied = 0
    while n := await apply_next_batch(conn, CATCH_UP_BATCH, schema=schema, lock=False):
        applied += n
    return applied


async def _connect(dsn: str, bulk: bool = False) -> asyncpg.Connection:
    """A connection of the rebuild's own; ``bulk`` for those that fill the scratch
    schema: their commits do not wait for the WAL to reach the disk (about 500 commits
    in a rebuild of a million tickets). A crash loses nothing that counts: the scratch
    schema is dropped by the next rebuild, and the swap (on a connection that is not
    bulk) commits durably, after every bulk commit."""
    settings = dict(SERVER_SETTINGS)
    if bulk:
        settings["synchronous_commit"] = "off"
    return await asyncpg.connect(dsn, server_settings=settings)


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


async def _lock_for_swap(conn: asyncpg.Connection, schemas: list[str]) -> None:
    """Take every table the swap moves, all or none, before moving any.

    Queries take their tables' locks in their own order (a list checks the checkpoints,
    then reads the summaries). A swap that held one table while it waited for another
    could close a cycle with such a query, and PostgreSQL would end one of the two with a
    deadlock error. So the swap waits at most SWAP_LOCK_WAIT for the lot; if that runs
    out it lets go of what it took (a savepoint) and queues again, and the query in its
    way finishes meanwhile. Queries are held up for at most that wait each time.
    """
    tables = ", ".join(f"{s}.{t}" for s in schemas for t in READ_MODEL_TABLES)
    await conn.execute(f"SET LOCAL lock_timeout = '{SWAP_LOCK_WAIT}'")
    for attempt in range(SWAP_LOCK_ATTEMPTS):
        try:
            async with conn.transaction():  # a savepoint: a timeout releases its locks
                await conn.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
            break
        except asyncpg.LockNotAvailableError:
            if attempt == SWAP_LOCK_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.01 * (attempt % 10))
    await conn.execute("SET LOCAL lock_timeout = 0")


async def _drop_leftovers(conn: asyncpg.Connection) -> list[str]:
    """Drop the scratch schemas of rebuilds that were killed before their cleanup ran.
    Called holding REBUILD_LOCK, so no other rebuild is using one."""
    names = [
        r["nspname"]
        for r in await conn.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'projections\\_rebuild\\_%' "
            "OR nspname LIKE 'projections\\_old\\_%'"
        )
    ]
    for name in names:
        log.warning("dropping %s, left by a rebuild that did not finish", name)
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")
    return names


async def rebuild_all(dsn: str) -> dict[str, Any]:
    """Replay the whole log into fresh tables and swap them in atomically.

    Returns ``{"events", "seconds", "events_per_s", "caught_up_during_swap", "phases"}``
    (``phases``: seconds spent in each step of the bulk fill).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    token = uuid.uuid4().hex[:10]
    new, old = f"projections_rebuild_{token}", f"projections_old_{token}"
    qn, qo, live = quote_ident(new), quote_ident(old), quote_ident(LIVE_SCHEMA)
    conn = await _connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", REBUILD_LOCK)
        try:
            await _drop_leftovers(conn)
            await create_schema(conn, new)
            replayed = await _bulk_fill(conn, new, dsn, timings)
            replayed += await _catch_up_schema(conn, new)
            async with conn.transaction():
                # the live runner is between batches (or waits for us) from here on
                await conn.execute("SELECT pg_advisory_xact_lock($1)", RUNNER_LOCK)
                final = await _catch_up_schema(conn, new)
                await _lock_for_swap(conn, [live, qn])
                final += await _catch_up_schema(conn, new)  # what came while we queued
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
        "phases": timings,
    }
