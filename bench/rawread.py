"""The raw read-and-decode of the whole log: the yardstick the rebuild rate is measured
against (``ticketing bench`` and ``python -m bench.keyword_index`` read it the same way)."""

from __future__ import annotations

import time

import asyncpg


async def raw_read_decode(dsn: str) -> tuple[int, float]:
    from services.eventstore import EventStore

    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    assert pool is not None
    try:
        store = EventStore(pool)
        after, n = (0, 0), 0
        started = time.perf_counter()
        while True:
            batch = await store.read_all(after=after, limit=5000)
            if not batch:
                break
            n += len(batch)
            after = batch[-1].checkpoint
        return n, time.perf_counter() - started
    finally:
        await pool.close()
