"""fetch_versioned: a read-model query that is skipped while the read models are unchanged."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from proj_helpers import CUSTOMERS, proj_catch_up

from projections.consistency import fetch_versioned
from services.commands import CommandService, Context

# nextval() shows whether the query ran: a skipped query does not move the sequence.
QUERY = "SELECT id, subject, nextval('versioned_probe') AS probe FROM ticket_summaries"


async def _raise(service: CommandService, subject: str) -> int:
    r = await service.raise_ticket(
        Context(actor=CUSTOMERS[0]), subject=subject, description="d", category_id=1
    )
    return r.ticket.id


async def _probe(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT last_value FROM versioned_probe"))


async def test_the_query_is_skipped_only_while_the_read_models_stay_at_the_known_checkpoint(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    await fresh_pool.execute("CREATE SEQUENCE versioned_probe")
    first = await _raise(proj_service, "first")
    await proj_catch_up(fresh_pool)

    read = await fetch_versioned(fresh_pool, QUERY, [], 0)
    assert not read.unchanged and read.lag is None and read.version is not None
    assert [r["id"] for r in read.rows] == [first]
    ran = await _probe(fresh_pool)

    again = await fetch_versioned(fresh_pool, QUERY, [], 0, known=read.version)
    assert again.unchanged and again.rows == [] and again.version == read.version
    assert await _probe(fresh_pool) == ran, "the query ran although nothing changed"

    # a command the projections have not applied yet: not current, so the query runs
    second = await _raise(proj_service, "second")
    behind = await fetch_versioned(fresh_pool, QUERY, [], 0, known=read.version)
    assert not behind.unchanged and behind.lag is not None and behind.version is None
    assert await _probe(fresh_pool) > ran

    # applied: the checkpoint moved, so the query runs and sees the new ticket
    await proj_catch_up(fresh_pool)
    moved = await fetch_versioned(fresh_pool, QUERY, [], 0, known=read.version)
    assert not moved.unchanged and moved.version is not None
    assert moved.version > read.version
    assert sorted(r["id"] for r in moved.rows) == sorted([first, second])


async def test_an_unknown_checkpoint_or_an_empty_log_always_runs_the_query(
    fresh_pool: asyncpg.Pool,
) -> None:
    known = (0, 0, datetime.now(UTC))
    empty = await fetch_versioned(fresh_pool, "SELECT 1 AS one", [], 0, known=known)
    assert not empty.unchanged and empty.version is None
    assert [r["one"] for r in empty.rows] == [1]


async def test_a_rebuild_at_the_same_checkpoint_is_a_new_version(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    """A rebuild may swap in tables built by fixed projection code at the same
    checkpoint: results kept from the old tables must not be served for the new."""
    from projections.rebuild import rebuild_all

    await _raise(proj_service, "before the rebuild")
    await proj_catch_up(fresh_pool)
    read = await fetch_versioned(fresh_pool, "SELECT count(*) AS n FROM ticket_summaries", [], 0)
    assert read.version is not None
    await rebuild_all(fresh_dsn)
    after = await fetch_versioned(
        fresh_pool, "SELECT count(*) AS n FROM ticket_summaries", [], 0, known=read.version
    )
    assert after.version is not None and after.version[:2] == read.version[:2]
    assert not after.unchanged and [r["n"] for r in after.rows] == [1]
