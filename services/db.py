"""Connection pools and schema migrations (``ticketing migrate`` is idempotent)."""

from __future__ import annotations

from importlib import resources

import asyncpg

MIGRATION_LOCK = 7_310_001  # advisory lock key: one migrator at a time

# Writers hold transactions for one statement; a stuck client must not stall the
# commit-safe readers (they wait for the oldest running transaction), so bound it.
SERVER_SETTINGS = {
    "idle_in_transaction_session_timeout": "5000",
    "application_name": "ticketing",
    # Short OLTP queries: JIT compilation costs more (5-10 ms) than it ever saves here.
    "jit": "off",
}


# Failures that mean the database cannot be reached or has dropped the connection (it is
# down, restarting, refusing connections, or a backend was terminated): nothing about the
# request, so the API answers 503 and the client retries; the pool reconnects by itself.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, e.g. the connection was closed mid-operation
    asyncpg.OperatorInterventionError,  # class 57: admin/crash shutdown, cannot connect now
    asyncpg.InsufficientResourcesError,  # class 53: too many connections, disk full
    # asyncpg's own state after the server dropped a pooled connection under it
    # ("cannot switch to state 12; another operation (2) is in progress")
    asyncpg.InternalClientError,
    ConnectionError,  # refused, reset, broken pipe
    TimeoutError,  # connecting (or waiting for a pooled connection) timed out
)


def database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database is unreachable rather than the request is wrong."""
    if isinstance(exc, asyncpg.QueryCanceledError):  # a statement timeout, not an outage
        return False
    if isinstance(exc, _UNAVAILABLE):
        return True
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return True
    # ALTER DATABASE ... ALLOW_CONNECTIONS false (maintenance) refuses new connections thus
    return isinstance(
        exc, asyncpg.ObjectNotInPrerequisiteStateError
    ) and "not currently accepting connections" in str(exc)


async def _no_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release reset query (one round trip per request).

    Safe because pooled connections never keep session state: advisory locks are
    transaction-scoped or taken on dedicated connections, and nothing LISTENs here.
    """


async def create_pool(
    dsn: str, *, min_size: int = 2, max_size: int = 10, reset: bool = False
) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        server_settings=SERVER_SETTINGS,
        reset=None if reset else _no_reset,
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
