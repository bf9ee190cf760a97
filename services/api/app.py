"""The Litestar application, composed in one place from settings.

The lifespan creates the asyncpg pool, the Redis client and the CommandService once
and keeps them on ``app.state``; handlers take them through ``services.api.deps``.
Authentication, the role policy and rate limiting apply to every route (auth.py),
errors are rendered per dialect by one handler (errors.py).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from services.api import attachments, health, native
from services.api.auth import AccessGuard, is_public_path
from services.api.errors import EXCEPTION_HANDLERS
from services.api.metrics import ApiMetrics, metrics_endpoint
from services.api.middleware import RequestMiddleware, before_send, configure_logging
from services.api.pagecache import PageCache
from services.commands import CommandService
from services.db import create_pool
from services.settings import Settings

log = logging.getLogger("ticketing.api")

SECURITY_SCHEMES = {
    "bearerAuth": SecurityScheme(
        type="http",
        scheme="bearer",
        bearer_format="JWT",
        description="JWT with claims sub, role (customer|agent|admin|auditor), name?, exp",
    ),
    "basicAuth": SecurityScheme(
        type="http", scheme="basic", description="API users created with `ticketing api-user add`"
    ),
}


def _make_waker(settings: Settings) -> Any:
    """The Redis waker from the workers package, if it is installed."""
    if not settings.redis_url:
        return None
    try:
        from workers.waker import RedisWaker
    except ImportError:
        log.warning("workers.waker is not available; projections rely on periodic catch-up")
        return None
    return RedisWaker(settings.redis_url)


def create_app(settings: Settings, *, debug: bool = False) -> Litestar:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url")
    configure_logging(settings.log_level)
    metrics = ApiMetrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        assert settings.database_url is not None
        pool = await create_pool(
            settings.database_url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
        )
        redis = aioredis.Redis.from_url(
            settings.redis_url or "redis://127.0.0.1:6379/0",
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
        )
        waker = _make_waker(settings)
        app.state.pool = pool
        app.state.redis = redis
        app.state.settings = settings
        app.state.commands = CommandService(
            pool, settings.sla_policy, waker=waker, on_outcome=metrics.on_outcome
        )
        try:
            yield
        finally:
            close = getattr(waker, "close", None) or getattr(waker, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # shutting down anyway
                    log.debug("waker close failed", exc_info=True)
            await redis.aclose()
            await pool.close()

    from services.api import audit, dialects

    route_handlers: list[Any] = [
        native.router,
        attachments.router_for(settings),
        health.router,
        metrics_endpoint,
        audit.router,
        *dialects.ROUTERS,
    ]
    app = Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        middleware=[RequestMiddleware(AccessGuard(settings), is_public_path)],
        exception_handlers=EXCEPTION_HANDLERS,
        before_send=[before_send],
        request_max_body_size=settings.body_max_bytes,
        openapi_config=OpenAPIConfig(
            title="Ticketing service",
            version="1.0.0",
            description=(
                "Event-sourced support tickets: the native /v1 API and five published "
                "dialects. Every route but /health/* and /schema requires a Bearer JWT "
                "or HTTP Basic credentials."
            ),
            path="/schema",
            components=Components(security_schemes=SECURITY_SCHEMES),  # type: ignore[arg-type]
            security=[{"bearerAuth": []}, {"basicAuth": []}],
            tags=[
                Tag(name="tickets", description="The native ticket API"),
                Tag(name="categories"),
                Tag(name="attachments"),
                Tag(name="operations", description="Health and metrics"),
            ],
        ),
        logging_config=None,
        debug=debug,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.page_cache = PageCache()
    return app
