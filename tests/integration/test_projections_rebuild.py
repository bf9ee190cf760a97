"""Rebuilds: a fresh replay swapped in while queries keep being served."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
from proj_helpers import (
    CUSTOMERS,
    proj_assert_equals_fold,
    proj_catch_up,
    proj_drive,
    proj_snapshot,
)

from projections import queries
from projections.consistency import wait_for_projections
from projections.queries import TicketFilter
from projections.rebuild import READ_MODEL_TABLES, build_into_schema, drop_schema, rebuild_all
from projections.runner import catch_up
from services.commands import CommandService, Context


async def test_rebuild_under_concurrent_reads_serves_every_read_and_keeps_the_data(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await proj_drive(proj_service, 60, steps=8)
    await proj_catch_up(fresh_pool)
    before = await proj_snapshot(fresh_pool)
    total = await queries.count_tickets(
        fresh_pool, TicketFilter(), now=datetime.now(UTC), timezone="UTC"
    )
    log_total = await queries.count_logs(fresh_pool)
    mine = await queries.count_tickets(
        fresh_pool,
        TicketFilter(requester=CUSTOMERS[0].id, q="problem"),
        now=datetime.now(UTC),
        timezone="UTC",
    )
    assert total == 60 and log_total > 60 and mine > 0
    stop = asyncio.Event()
    rebuilding = asyncio.Event()
    served: list[int] = [0, 0]
    failures: list[BaseException] = []

    async def reader() -> None:
        # the pool's connections keep asyncpg's prepared statements across the swap
        while not stop.is_set():
            try:
                now = datetime.now(UTC)
                rows, cursor = await queries.list_tickets(
                    fresh_pool, TicketFilter(), limit=25, now=now, timezone="UTC"
                )
                assert len(rows) == 25 and cursor is not None
                page2, _ = await queries.list_tickets(
                    fresh_pool, TicketFilter(), limit=25, cursor=cursor, now=now, timezone="UTC"
                )
                assert page2[0].id < rows[-1].id
                assert (
                    await queries.count_tickets(fresh_pool, TicketFilter(), now=now, timezone="UTC")
                    == total
                )
                assert (
                    await queries.count_tickets(
                        fresh_pool,
                        TicketFilter(requester=CUSTOMERS[0].id, q="problem"),
                        now=now,
                        timezone="UTC",
                    )
                    == mine
                )
                assert await queries.count_logs(fresh_pool) == log_total
                assert len(await queries.list_logs(fresh_pool, limit=10, offset=5)) == 10
                assert await wait_for_projections(fresh_pool, 2000) is None
                served[1 if rebuilding.is_set() else 0] += 1
            except BaseException as exc:
                failures.append(exc)
                return
            await asyncio.sleep(0)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    await asyncio.sleep(0.05)
    rebuilding.set()
    stats = await rebuild_all(fresh_dsn)
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*readers)
    assert failures == [], f"a read failed during the rebuild: {failures[0]!r}"
    assert served[1] > 0, "no read ran while the rebuild was in progress"
    assert stats["events"] == before["ticket_logs"].__len__()
    after = await proj_snapshot(fresh_pool)
    assert after == before
    # the live runner carries on with the swapped-in tables
    await proj_drive(proj_service, 5, seed=99)
    await proj_catch_up(fresh_pool)
    await proj_assert_equals_fold(fresh_pool)


async def test_rebuild_while_commands_and_the_runner_keep_going_ends_equal_to_the_fold(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await proj_drive(proj_service, 40, steps=6, seed=3)
    await proj_catch_up(fresh_pool)
    stop = asyncio.Event()

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            await proj_service.raise_ticket(
                Context(actor=CUSTOMERS[1]),
                subject=f"during rebuild {n}",
                description="racing the swap",
                category_id=2,
            )
            n += 1
            await asyncio.sleep(0)

    async def runner() -> None:
        while not stop.is_set():
            await catch_up(fresh_pool, batch_size=7)
            await asyncio.sleep(0.001)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(runner())]
    await rebuild_all(fresh_dsn)
    stop.set()
    await asyncio.gather(*tasks)
    await proj_catch_up(fresh_pool)
    await proj_assert_equals_fold(fresh_pool)


async def test_build_into_schema_equals_the_live_read_models(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await proj_drive(proj_service, 30, steps=10, seed=5)
    await proj_catch_up(fresh_pool, batch_size=13)
    await build_into_schema(fresh_dsn, "audit_scratch")
    try:
        live = await proj_snapshot(fresh_pool)
        scratch = await proj_snapshot(fresh_pool, "audit_scratch")
        assert scratch == live
        assert len(live["ticket_summaries"]) == 30
    finally:
        await drop_schema(fresh_dsn, "audit_scratch")


async def test_the_swap_never_deadlocks_with_a_reader_that_locks_the_tables_in_another_order(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    # A read model query takes its tables' locks in its own order (a list's consistency
    # check reads the checkpoints, then the summaries); the swap moves every table. A
    # swap that waited on one table while holding another would deadlock with it, and
    # PostgreSQL would kill one of the two after deadlock_timeout.
    await proj_drive(proj_service, 10, steps=3, seed=7)
    await proj_catch_up(fresh_pool)
    reader = await asyncpg.connect(fresh_dsn)
    try:
        async with reader.transaction():
            await reader.fetchval("SELECT count(*) FROM projection_checkpoints")
            swap = asyncio.create_task(rebuild_all(fresh_dsn))
            # wait until the swap queues for the checkpoints this reader holds
            for _ in range(600):
                waiting = await reader.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE NOT l.granted AND c.relname = 'projection_checkpoints' "
                    "AND l.pid <> pg_backend_pid()"
                )
                if waiting or swap.done():
                    break
                await asyncio.sleep(0.05)
            assert waiting, "the swap never queued for the table the reader holds"
            # the reader goes on to the summaries, which the swap must not be holding
            assert await reader.fetchval("SELECT count(*) FROM ticket_summaries") == 10
        stats = await asyncio.wait_for(swap, 60)
    finally:
        await reader.close()
    assert stats["events"] > 10
    await proj_assert_equals_fold(fresh_pool)


async def test_a_rebuild_drops_what_a_killed_rebuild_left_behind(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await proj_drive(proj_service, 3, steps=2, seed=11)
    await proj_catch_up(fresh_pool)
    for leftover in ("projections_rebuild_deadbeef01", "projections_old_deadbeef01"):
        await fresh_pool.execute(f"CREATE SCHEMA {leftover}")
        await fresh_pool.execute(f"CREATE TABLE {leftover}.ticket_summaries (id bigint)")
    await fresh_pool.execute("CREATE SCHEMA projections_rebuilder_keep")  # not one of ours
    try:
        await rebuild_all(fresh_dsn)
        left = await fresh_pool.fetch(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'projections%' ORDER BY 1"
        )
        assert [r["nspname"] for r in left] == ["projections_rebuilder_keep"]
    finally:
        await fresh_pool.execute("DROP SCHEMA IF EXISTS projections_rebuilder_keep")
    await proj_assert_equals_fold(fresh_pool)


async def test_a_rebuild_keeps_every_index_and_storage_setting_of_the_migrations(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    """The bulk fill drops the secondary indexes and builds them again at the end: the
    swapped-in tables have exactly the indexes (and fillfactor) the migrations give."""
    shape = (
        "SELECT c.relname AS table, i.indexname, replace(i.indexdef, 'public.', '') AS def, "
        "c.reloptions FROM pg_indexes i JOIN pg_class c ON c.relname = i.tablename "
        "AND c.relnamespace = 'public'::regnamespace WHERE i.schemaname = 'public' "
        "AND i.tablename = ANY($1::text[]) ORDER BY 1, 2"
    )
    await proj_drive(proj_service, 20, steps=6, seed=8)
    await proj_catch_up(fresh_pool)
    before = [tuple(r) for r in await fresh_pool.fetch(shape, list(READ_MODEL_TABLES))]
    assert ("sla_first_response_queue", "sla_first_response_queue_due_idx") in {
        r[:2] for r in before
    }
    assert any(r[0] == "ticket_summaries" and r[3] == ["fillfactor=80"] for r in before)
    await rebuild_all(fresh_dsn)
    after = [tuple(r) for r in await fresh_pool.fetch(shape, list(READ_MODEL_TABLES))]
    assert after == before
    await proj_assert_equals_fold(fresh_pool)


async def test_only_the_scratch_fill_skips_waiting_for_the_wal_the_swap_is_durable(
    fresh_dsn: str,
) -> None:
    """The bulk connections commit without waiting for the WAL to reach the disk (a
    crash leaves only a scratch schema, dropped by the next rebuild); every other
    connection of the rebuild, the swap's among them, commits durably, and its commit
    makes every earlier one durable too."""
    from projections.rebuild import _connect

    for bulk, expected in ((True, "off"), (False, "on")):
        conn = await _connect(fresh_dsn, bulk=bulk)
        try:
            assert await conn.fetchval("SHOW synchronous_commit") == expected
        finally:
            await conn.close()
