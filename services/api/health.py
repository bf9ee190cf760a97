"""Liveness and readiness probes (no authentication).

``/health/ready`` answers 503 when the database is unreachable (``unavailable``) or when
the read models are stopped at an event they cannot apply (``failing``: the runner keeps
retrying it and never skips it, see ``projections/failures.py``; the check names the
event's position, since when and the error). Without Redis commands still succeed (rate
limiting fails open, projections catch up later), so Redis trouble and projection lag
are reported as ``degraded`` with a 200. So is the lack of a worker (none has reported
within ``heartbeat.STALE_S``, services/heartbeat.py): commands succeed, but nothing builds
the read models or records SLA breaches, which a quiet log would not show as lag.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, Router, get
from litestar.openapi.datastructures import ResponseSpec

CheckStatus = Literal["ok", "degraded", "failing", "unavailable"]


class Live(msgspec.Struct):
    status: Literal["ok"]


class Check(msgspec.Struct, omit_defaults=True):
    status: CheckStatus
    detail: str | None = None
    events_behind: int | None = None
    lag_ms: int | None = None
    # projections only, while ``failing``: the event that cannot be applied, and since when
    failing_position: int | None = None
    failing_since: datetime | None = None
    # worker only: how many reported lately, and the last report of any
    alive: int | None = None
    last_seen_at: datetime | None = None


class Ready(msgspec.Struct):
    status: CheckStatus
    database: Check
    redis: Check
    projections: Check
    worker: Check


@get("/live", summary="Liveness: the process answers")
async def live() -> Live:
    return Live(status="ok")


async def _projections_check(pool: asyncpg.Pool) -> Check:
    from projections.consistency import projection_lag
    from projections.failures import projection_failure
    from services.api.metrics import lag_of

    events, ms = lag_of(await asyncio.wait_for(projection_lag(pool), timeout=2))
    failure = await asyncio.wait_for(projection_failure(pool), timeout=2)
    if failure is not None:
        return Check(
            status="failing",
            detail=failure.error,
            events_behind=int(events),
            lag_ms=int(ms),
            failing_position=failure.position,
            failing_since=failure.since,
        )
    degraded = ms > 10_000
    return Check(status="degraded" if degraded else "ok", events_behind=int(events), lag_ms=int(ms))


async def _worker_check(pool: asyncpg.Pool) -> Check:
    from services import heartbeat

    seen = await asyncio.wait_for(heartbeat.workers_seen(pool), timeout=2)
    if seen.alive:
        return Check(status="ok", alive=seen.alive, last_seen_at=seen.last_seen_at)
    return Check(
        status="degraded",
        detail=f"no worker has reported within {heartbeat.STALE_S:g} s: read models and "
        "SLA breaches are not being updated",
        alive=0,
        last_seen_at=seen.last_seen_at,
    )


async def readiness(pool: asyncpg.Pool, redis: Any) -> tuple[Ready, int]:
    """The readiness report and its HTTP status (what ``GET /health/ready`` answers)."""
    database = Check(status="ok")
    try:
        await asyncio.wait_for(pool.fetchval("SELECT 1"), timeout=2)
    except Exception as exc:
        database = Check(status="unavailable", detail=type(exc).__name__)
    redis_check = Check(status="ok")
    try:
        await asyncio.wait_for(redis.ping(), timeout=1)
    except Exception as exc:
        redis_check = Check(status="degraded", detail=type(exc).__name__)
    projections = Check(status="ok")
    worker = Check(status="ok")
    if database.status == "ok":
        try:
            projections = await _projections_check(pool)
        except Exception as exc:
            projections = Check(status="degraded", detail=type(exc).__name__)
        try:
            worker = await _worker_check(pool)
        except Exception as exc:
            worker = Check(status="degraded", detail=type(exc).__name__)
    overall: CheckStatus = "ok"
    if database.status != "ok":
        overall = "unavailable"
    elif projections.status == "failing":
        overall = "failing"
    elif "degraded" in (redis_check.status, projections.status, worker.status):
        overall = "degraded"
    body = Ready(
        status=overall,
        database=database,
        redis=redis_check,
        projections=projections,
        worker=worker,
    )
    return body, 503 if overall in ("unavailable", "failing") else 200


@get(
    "/ready",
    summary="Readiness: database, Redis, projection lag and a live worker",
    responses={
        503: ResponseSpec(
            data_container=Ready,
            description="the database is unreachable, or the read models are stopped at an "
            "event they cannot apply (projections.status failing, with the error)",
        )
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[Ready]:
    state = request.app.state
    body, status = await readiness(state.pool, state.redis)
    return Response(body, status_code=status)


router = Router(path="/health", route_handlers=[live, ready], tags=["operations"], security=[])
