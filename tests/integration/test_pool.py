"""services.db.Pool: releases without a task per query, and never loses a connection."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.db import Pool, _releases_without_waiting, create_pool


async def test_a_plain_release_takes_the_inline_path_on_this_asyncpg(fresh_dsn: str) -> None:
    pool = await create_pool(fresh_dsn, min_size=1, max_size=2)
    try:
        assert isinstance(pool, Pool)
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            assert _releases_without_waiting(pool, conn)  # else the saving is gone
            tx = conn.transaction()
            await tx.start()
            assert not _releases_without_waiting(pool, conn)  # a rollback to wait for
            await tx.rollback()
        # a pool with asyncpg's reset query always takes asyncpg's own path
        resetting = await create_pool(fresh_dsn, min_size=1, max_size=1, reset=True)
        async with resetting.acquire() as conn:
            assert not _releases_without_waiting(resetting, conn)
        await resetting.close()
    finally:
        await pool.close()


async def test_connections_come_back_after_many_queries_errors_and_cancellations(
    fresh_dsn: str,
) -> None:
    pool = await create_pool(fresh_dsn, min_size=1, max_size=4)
    try:
        assert sum(await asyncio.gather(*(pool.fetchval("SELECT 1") for _ in range(200)))) == 200
        with pytest.raises(asyncpg.PostgresError):
            await pool.fetchval("SELECT 1/0")
        slow = [asyncio.create_task(pool.fetchval("SELECT pg_sleep(0.2)")) for _ in range(8)]
        await asyncio.sleep(0.05)
        for t in slow:
            t.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        # a transaction left open by a cancelled caller is rolled back on release
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute("CREATE TEMP TABLE t (x int)")
        # every connection can be taken at once again, and each works
        held = [await asyncio.wait_for(pool.acquire(), 5) for _ in range(4)]
        assert [await c.fetchval("SELECT 2") for c in held] == [2, 2, 2, 2]
        for c in held:
            await pool.release(c)
        assert pool.get_idle_size() == pool.get_size()
    finally:
        await pool.close()
