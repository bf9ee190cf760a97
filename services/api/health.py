"""Liveness and readiness probes (no authentication).

``/health/ready`` answers 503 only when the database is unreachable: without Redis
commands still succeed (rate limiting fails open, projections catch up later), so
Redis trouble and projection lag are reported as ``degraded`` with a 200.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import msgspec
from litestar import Request, Response, Router, get
from litestar.openapi.datastructures import ResponseSpec

CheckStatus = Literal["ok", "degraded", "unavailable"]


class Live(msgspec.Struct):
    status: Literal["ok"]


class Check(msgspec.Struct, omit_defaults=True):
    status: CheckStatus
    detail: str | None = None
    events_behind: int | None = None
    lag_ms: int | None = None


class Ready(msgspec.Struct):
    status: CheckStatus
    database: Check
    redis: Check
    projections: Check


@get("/live", summary="Liveness: the process answers")
async def live() -> Live:
    return Live(status="ok")


@get(
    "/ready",
    summary="Readiness: database, Redis and projection lag",
    responses={503: ResponseSpec(data_container=Ready, description="the database is unreachable")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[Ready]:
    state = request.app.state
    database = Check(status="ok")
    try:
        await asyncio.wait_for(state.pool.fetchval("SELECT 1"), timeout=2)
    except Exception as exc:
        database = Check(status="unavailable", detail=type(exc).__name__)
    redis = Check(status="ok")
    try:
        await asyncio.wait_for(state.redis.ping(), timeout=1)
    except Exception as exc:
        redis = Check(status="degraded", detail=type(exc).__name__)
    projections = Check(status="ok")
    if database.status == "ok":
        try:
            from projections.consistency import projection_lag
            from services.api.metrics import lag_of

            events, ms = lag_of(await asyncio.wait_for(projection_lag(state.pool), timeout=2))
            degraded = ms > 10_000
            projections = Check(
                status="degraded" if degraded else "ok", events_behind=int(events), lag_ms=int(ms)
            )
        except Exception as exc:
            projections = Check(status="degraded", detail=type(exc).__name__)
    overall: CheckStatus = "ok"
    if database.status != "ok":
        overall = "unavailable"
    elif redis.status != "ok" or projections.status != "ok":
        overall = "degraded"
    body = Ready(status=overall, database=database, redis=redis, projections=projections)
    return Response(body, status_code=503 if overall == "unavailable" else 200)


router = Router(path="/health", route_handlers=[live, ready], tags=["operations"], security=[])
