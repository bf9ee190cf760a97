"""The benchmark's lifecycle seeder writes what the service itself would: real domain
decisions, valid hash chains, and a log the projections replay like any other."""

from __future__ import annotations

import asyncpg
from proj_helpers import proj_assert_equals_fold

from bench.seed import seed_lifecycles
from projections.rebuild import rebuild_all
from services.audit import VerifyReport, verify_chains


async def test_seeded_lifecycles_verify_and_rebuild_like_the_services_own(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    stored = await seed_lifecycles(fresh_dsn, 600, batch=150)
    assert stored >= 600
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") == stored

    report = VerifyReport()
    async with fresh_pool.acquire() as conn:
        await verify_chains(conn, report)
    assert report.ok, report.summary()
    assert report.events == stored and report.streams > 50

    types = {r["type"] for r in await fresh_pool.fetch("SELECT DISTINCT type FROM events")}
    assert {
        "TicketRaised",
        "TicketAssigned",
        "MessagePosted",
        "StatusChanged",
        "TicketClosed",
        "TicketRated",
    } <= types
    # several events per ticket, some internal notes, and new ids past the seeded ones
    per_ticket = stored / report.streams
    assert 6 <= per_ticket <= 14, per_ticket
    internal = await fresh_pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'MessagePosted' "
        "AND data->>'visibility' = 'internal'"
    )
    assert internal > 0
    top = await fresh_pool.fetchval("SELECT max(stream_id) FROM events")
    assert await fresh_pool.fetchval("SELECT nextval('ticket_id_seq')") > top

    await rebuild_all(fresh_dsn)
    await proj_assert_equals_fold(fresh_pool)
