"""Real PostgreSQL and Redis for every test that needs them.

TICKETING_TEST_DATABASE_URL / TICKETING_TEST_REDIS_URL point at running servers (CI sets
them to the machine's own); when unset, embedded servers start under a temporary
directory, so the suite runs on a fresh machine. Each session migrates a template
database once; ``fresh_dsn`` clones it for tests that need an empty event log.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from services.commands import CommandService
from services.db import create_pool, migrate
from services.embedded import EmbeddedServers, with_database
from services.settings import load_settings


class TestServers:
    def __init__(self, admin_dsn: str, redis_url: str) -> None:
        self.admin_dsn = admin_dsn
        self.redis_url = redis_url
        self.template = f"ticketing_tpl_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []

    def dsn(self, database: str) -> str:
        return with_database(self.admin_dsn, database)

    async def create_database(self, template: str | None = None) -> str:
        name = f"ticketing_t_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            tpl = f" TEMPLATE {template}" if template else ""
            await conn.execute(f"CREATE DATABASE {name}{tpl}")
        finally:
            await conn.close()
        self.created.append(name)
        return name

    async def drop_all(self) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            for name in [*self.created, self.template]:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[TestServers]:
    db_url = os.environ.get("TICKETING_TEST_DATABASE_URL")
    redis_url = os.environ.get("TICKETING_TEST_REDIS_URL")
    embedded: EmbeddedServers | None = None
    tmp: str | None = None
    if not db_url or not redis_url:
        tmp = tempfile.mkdtemp(prefix="ticketing-test-")
        embedded = EmbeddedServers(Path(tmp))
        if not db_url:
            db_url = embedded.start_postgres()
        if not redis_url:
            redis_url = embedded.start_redis()
    try:
        yield TestServers(db_url, redis_url)
    finally:
        if embedded is not None:
            embedded.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def pytest_configure(config: pytest.Config) -> None:
    # SIGTERM (a CI time-out, `kill`) ends the run as Ctrl-C does: pytest then tears the
    # session down, embedded servers included, instead of leaving them running.
    signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
async def template_db(servers: TestServers) -> AsyncIterator[str]:
    conn = await asyncpg.connect(servers.admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {servers.template}")
    finally:
        await conn.close()
    await migrate(servers.dsn(servers.template))
    yield servers.template
    await servers.drop_all()


@pytest.fixture(scope="session")
async def shared_dsn(servers: TestServers, template_db: str) -> str:
    """One migrated database shared by tests that tolerate each other's tickets."""
    return servers.dsn(await servers.create_database(template_db))


@pytest.fixture
async def fresh_dsn(servers: TestServers, template_db: str) -> str:
    """A migrated database of its own, with an empty event log."""
    return servers.dsn(await servers.create_database(template_db))


@pytest.fixture(scope="session")
async def pool(shared_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(shared_dsn, min_size=2, max_size=20)
    yield p
    await p.close()


@pytest.fixture
async def fresh_pool(fresh_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(fresh_dsn, min_size=2, max_size=20)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def settings():  # type: ignore[no-untyped-def]
    return load_settings({})


@pytest.fixture
def service(pool: asyncpg.Pool, settings) -> CommandService:  # type: ignore[no-untyped-def]
    return CommandService(pool, settings.sla_policy)


@pytest.fixture
async def redis_client(servers: TestServers) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(servers.redis_url)
    yield client
    await client.aclose()
