"""VersionProbe: concurrent read-model version checks share statements, never a stale one."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from proj_helpers import CUSTOMERS, proj_catch_up

from projections.consistency import VersionProbe, _read_version
from services.commands import CommandService, Context


class GatedPool:
    """A real pool whose ``fetchrow`` holds its answer until ``gate`` opens (and can fail
    once): lets a test act between a check's statement and its answer."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.gate = asyncio.Event()
        self.ran = asyncio.Event()
        self.fail_next = False

    async def fetchrow(self, *args: Any) -> Any:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("database went away")
        row = await self.pool.fetchrow(*args)
        self.ran.set()
        await self.gate.wait()
        return row


async def _raise(service: CommandService) -> None:
    await service.raise_ticket(
        Context(actor=CUSTOMERS[0]), subject="s", description="d", category_id=1
    )


@pytest.fixture
async def current(proj_service: CommandService, fresh_pool: asyncpg.Pool) -> asyncpg.Pool:
    """A database holding one ticket, its projections caught up."""
    await _raise(proj_service)
    await proj_catch_up(fresh_pool)
    return fresh_pool


async def test_concurrent_callers_share_one_statement_and_see_the_current_version(
    fresh_pool: asyncpg.Pool, current: asyncpg.Pool
) -> None:
    expected = await _read_version(fresh_pool)
    assert expected is not None

    probe = VersionProbe()
    found = await asyncio.gather(*(probe.version(fresh_pool) for _ in range(50)))
    assert found == [expected] * 50
    # the first caller's check, and one more for everyone who arrived while it ran
    assert probe.statements == 2


async def test_a_caller_that_arrives_during_a_check_gets_a_later_one(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, current: asyncpg.Pool
) -> None:
    gated = GatedPool(fresh_pool)
    probe = VersionProbe()

    early = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await gated.ran.wait()  # its statement has read the version, its answer is held
    await _raise(proj_service)  # committed after that snapshot: projections now behind
    late = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    gated.gate.set()

    assert await early is not None  # current as of before the write
    assert await late is None  # a check that started after the write: not current
    assert probe.statements == 2


async def test_an_error_reaches_every_waiter_and_the_next_call_checks_again(
    fresh_pool: asyncpg.Pool, current: asyncpg.Pool
) -> None:
    gated = GatedPool(fresh_pool)
    gated.gate.set()
    gated.fail_next = True
    probe = VersionProbe()

    with pytest.raises(ConnectionError):
        await probe.version(gated)  # type: ignore[arg-type]
    assert await probe.version(gated) == await _read_version(fresh_pool)  # type: ignore[arg-type]


async def test_a_caller_that_goes_away_does_not_cancel_the_shared_check(
    fresh_pool: asyncpg.Pool, current: asyncpg.Pool
) -> None:
    gated = GatedPool(fresh_pool)
    probe = VersionProbe()

    first = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await gated.ran.wait()
    second = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    third = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    second.cancel()
    gated.gate.set()
    assert await first is not None
    assert await third == await first
    with pytest.raises(asyncio.CancelledError):
        await second


async def test_a_shutdown_cancels_the_check_and_its_waiters_and_starts_no_other(
    fresh_pool: asyncpg.Pool, current: asyncpg.Pool
) -> None:
    gated = GatedPool(fresh_pool)
    probe = VersionProbe()

    first = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await gated.ran.wait()
    waiting = asyncio.create_task(probe.version(gated))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert probe._task is not None
    probe._task.cancel()  # as the loop does to every task at shutdown
    for task in (first, waiting):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert probe.statements == 1


async def test_lists_through_the_probe_hold_every_write_acknowledged_before_them(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    from datetime import UTC, datetime

    from projections import queries

    probe = VersionProbe()

    async def page() -> queries.Page:
        return await queries.list_page_consistent(
            fresh_pool,
            queries.TicketFilter(),
            limit=50,
            now=datetime.now(UTC),
            timezone="UTC",
            wait_ms=10_000,
            probe=probe,
        )

    raised: set[int] = set()
    for _ in range(4):
        r = await proj_service.raise_ticket(
            Context(actor=CUSTOMERS[0]), subject="s", description="d", category_id=1
        )
        raised.add(r.ticket.id)
        # behind: these wait until the projections have the new ticket
        waiting = [asyncio.create_task(page()) for _ in range(8)]
        await asyncio.sleep(0.02)
        await proj_catch_up(fresh_pool)
        # current: these take the shared check, then the plain list
        current = [asyncio.create_task(page()) for _ in range(8)]
        for p in await asyncio.gather(*waiting, *current):
            assert {t.id for t in p.rows} == raised
            assert p.lag is None and p.version is not None
        latest = await _read_version(fresh_pool)
        assert all(p.version == latest for p in await asyncio.gather(*current))
        # and a repeat at that version is "unchanged" without reading rows
        again = await queries.list_page_consistent(
            fresh_pool,
            queries.TicketFilter(),
            limit=50,
            now=datetime.now(UTC),
            timezone="UTC",
            wait_ms=0,
            known=latest,
            probe=probe,
        )
        assert again.unchanged and again.rows == []
