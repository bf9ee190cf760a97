"""API fixtures: a live server (uvicorn on a free port) against a cloned database.

Reusable by every API test module (native, dialects, audit):

- ``api_settings``: the live server's Settings (JWT secret, database and Redis URLs)
- ``live_server`` / ``live_url``: a running server (session-scoped), with projections
  kept up to date in the same process, so read-your-writes holds
- ``token(sub, role, name=None, ttl=3600)``: a signed JWT for the server
- ``auth(sub, role, name=None)``: ``{"Authorization": "Bearer …"}`` headers
- ``client``: ``httpx.AsyncClient(base_url=live_url)``
- ``api_pool``: an asyncpg pool on the live server's database
- ``basic_user(role, name=None, display_name=None) -> (name, password)``: an API user
- ``basic_auth_headers(name, password)``: Basic ``Authorization`` headers
- ``problem_of(response)``: the problem+json body of a native error
- ``event_count()``: number of events in the live database (for "nothing appended")
- ``start_live_server(**overrides)``: another server with other settings (e.g. a low
  rate limit), stopped at the end of the session
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import uvicorn

from services.api.app import create_app
from services.db import create_pool
from services.passwords import hash_password
from services.settings import Settings
from services.tokens import issue_token

log = logging.getLogger("tests.api")

JWT_SECRET = "test-secret-" + "x" * 32


async def _project_forever(dsn: str) -> None:
    """Keep the projections caught up, as the worker would (polling; no Redis needed)."""
    try:
        from projections import runner
    except ImportError:  # projections not written yet: lists will lag
        return
    catch_up = getattr(runner, "catch_up", None)
    if catch_up is None:
        return
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        while True:
            try:
                await catch_up(pool)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("projection catch-up failed in the test server")
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.005)
    finally:
        await pool.close()


class LiveServer:
    """uvicorn serving create_app(settings) in a thread with its own event loop."""

    def __init__(self, settings: Settings, *, project: bool = True) -> None:
        self.settings = settings
        self.project = project
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            loop="asyncio",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self._run, name=f"live-server-{self.port}", daemon=True
        )
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # surfaced by start()
            self.error = exc

    async def _main(self) -> None:
        projector: asyncio.Task[None] | None = None
        if self.project and self.settings.database_url:
            projector = asyncio.create_task(_project_forever(self.settings.database_url))
        try:
            await self.server.serve(sockets=[self.sock])
        finally:
            if projector is not None:
                projector.cancel()
                with contextlib.suppress(BaseException):
                    await projector

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"live server failed to start: {self.error!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("live server did not start within 60 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.sock.close()


def make_settings(dsn: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": dsn,
        "redis_url": redis_url,
        "jwt_secret": JWT_SECRET,
        "consistency_wait_ms": 10_000,
        "rate_limit_per_minute": 0,
        "pool_min_size": 1,
        "pool_max_size": 10,
        "log_level": "INFO",
    }
    values.update(overrides)
    return Settings(**values).validate()


@pytest.fixture(scope="session")
async def live_dsn(servers: Any, template_db: str) -> str:
    """The live server's own database, cloned from the migrated template."""
    return str(servers.dsn(await servers.create_database(template_db)))


@pytest.fixture(scope="session")
def api_settings(live_dsn: str, servers: Any) -> Settings:
    return make_settings(live_dsn, servers.redis_url)


@pytest.fixture(scope="session")
def live_server(api_settings: Settings) -> Iterator[LiveServer]:
    server = LiveServer(api_settings).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def live_url(live_server: LiveServer) -> str:
    return live_server.url


@pytest.fixture(scope="session")
def start_live_server(
    servers: Any, template_db: str
) -> Iterator[Callable[..., Awaitable[LiveServer]]]:
    """Start another live server on its own database with settings overrides."""
    started: list[LiveServer] = []

    async def start(*, project: bool = True, **overrides: Any) -> LiveServer:
        dsn = servers.dsn(await servers.create_database(template_db))
        redis_url = overrides.pop("redis_url", servers.redis_url)
        settings = make_settings(dsn, redis_url, **overrides)
        server = await asyncio.to_thread(lambda: LiveServer(settings, project=project).start())
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def token() -> Callable[..., str]:
    def make(sub: str, role: str, name: str | None = None, ttl: int = 3600) -> str:
        return issue_token(JWT_SECRET, sub, role, name=name, ttl_s=ttl)

    return make


@pytest.fixture(scope="session")
def auth(token: Callable[..., str]) -> Callable[..., dict[str, str]]:
    def make(sub: str, role: str, name: str | None = None, ttl: int = 3600) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(sub, role, name, ttl)}"}

    return make


def basic_auth(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


@pytest.fixture(scope="session")
def basic_auth_headers() -> Callable[[str, str], dict[str, str]]:
    return basic_auth


@pytest.fixture(scope="session")
async def api_pool(live_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(live_dsn, min_size=1, max_size=5)
    yield p
    await p.close()


@pytest.fixture(scope="session")
def basic_user(api_pool: asyncpg.Pool) -> Callable[..., Awaitable[tuple[str, str]]]:
    """``await basic_user("customer")`` → (name, password) of a new enabled API user."""

    async def make(
        role: str, name: str | None = None, display_name: str | None = None
    ) -> tuple[str, str]:
        name = name or f"api-{role}-{uuid.uuid4().hex[:8]}"
        password = secrets.token_urlsafe(16)
        hashed = await asyncio.to_thread(hash_password, password)
        await api_pool.execute(
            "INSERT INTO api_users (name, password_hash, role, display_name) "
            "VALUES ($1, $2, $3, $4)",
            name,
            hashed,
            role,
            display_name,
        )
        return name, password

    return make


@pytest.fixture(scope="session")
def event_count(api_pool: asyncpg.Pool) -> Callable[[], Awaitable[int]]:
    async def count() -> int:
        return int(await api_pool.fetchval("SELECT count(*) FROM events"))

    return count


@pytest.fixture
async def client(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def problem_of() -> Callable[[httpx.Response], dict[str, Any]]:
    """``problem_of(response)``: the native problem+json body (media type asserted)."""
    return problem


def problem(response: httpx.Response) -> dict[str, Any]:
    """The problem+json body of a native error response (asserting its media type)."""
    assert response.headers["content-type"].startswith("application/problem+json"), (
        response.status_code,
        response.headers.get("content-type"),
        response.text,
    )
    body: dict[str, Any] = msgspec.json.decode(response.content)
    return body
