"""Connection pools and schema migrations (``ticketing migrate`` is idempotent)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

MIGRATION_LOCK = 7_310_001  # advisory lock key: one migrator at a time

# Writers hold transactions for one statement; a stuck client must not stall the
# commit-safe readers (they wait for the oldest running transaction), so bound it.
SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "5000",
    "application_name": "ticketing",
    # Short OLTP queries: JIT compilation costs more (5-10 ms) than it ever saves here.
    "jit": "off",
}


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query (one round trip per request).

    Safe because pooled connections never keep session state: advisory locks are
    transaction-scoped or taken on dedicated connections, and nothing LISTENs here.
    """


class Pool(asyncpg.Pool):  # type: ignore[misc]
    """asyncpg's pool, minus a task per release.

    asyncpg releases every connection through ``asyncio.shield`` so that a caller
    cancelled meanwhile still returns it; the shield costs a task per query (5-8% of a
    short read's CPU, measured with ``python -m bench.inprocess``). When the release cannot
    suspend (no transaction to roll back, no cancellation to wait for, no reset query, the
    connection not due to be closed), it runs the same holder code inline: with nothing
    to wait for there is nothing a cancellation could interrupt. Anything else, or an
    asyncpg whose internals differ, takes asyncpg's own path.
    """

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not _releases_without_waiting(self, connection):
            await super().release(connection, timeout=timeout)
            return
        holder = connection._holder
        self._check_init()
        connection._con._on_release()
        await holder.release(holder._timeout if timeout is None else timeout)


def _releases_without_waiting(pool: Pool, proxy: Any) -> bool:
    try:
        con, holder = proxy._con, proxy._holder
        return bool(
            type(proxy) is PoolConnectionProxy
            and con is not None
            and holder._pool is pool
            and pool._reset is _no_reset
            and not con.is_closed()
            and not con.is_in_transaction()
            and con._top_xact is None
            and not con._protocol._is_cancelling()
            and con._protocol.queries_count < holder._max_queries
            and holder._generation == pool._generation
        )
    except AttributeError:  # another asyncpg: its own path
        return False


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, reset: bool = False
) -> asyncpg.Pool:
    # asyncpg.create_pool's defaults, with our class (it takes no pool class)
    pool = await Pool(
        dsn,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        setup=None,
        init=None,
        reset=None if reset else _no_reset,
        loop=None,
        server_settings=SERVER_SETTINGS,
    )
    assert pool is not None
    return pool


def migration_files() -> list[tuple[str, str]]:
    """(name, sql) for every migration of the service and its projections, in order."""
    found: list[tuple[str, str]] = []
    for package in ("services.migrations", "projections.migrations"):
        try:
            folder = resources.files(package)
        except ModuleNotFoundError:
            continue
        for entry in folder.iterdir():
            if entry.name.endswith(".sql"):
                found.append((entry.name, entry.read_text()))
    return sorted(found)


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations under an advisory lock; return the names applied."""
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
                applied.append(name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
