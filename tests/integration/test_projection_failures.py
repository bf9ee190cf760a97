"""A poison event stops the read models visibly and boundedly, and is never skipped.

A CHECK constraint added to a read-model table makes one ticket impossible to project
(the event itself is valid). The runner applies everything before it, keeps the
checkpoint just before it, records the error once, and /health/ready's check answers
"failing" with a 503; once the constraint is gone the next catch-up applies the event and
everything after it, and the record clears.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from proj_helpers import CUSTOMERS, proj_catch_up, proj_wait_until

from projections.failures import projection_failure
from projections.runner import catch_up
from services import heartbeat
from services.api.health import readiness
from services.commands import CommandService, Context

POISON = "poison subject"


async def _raise(service: CommandService, subject: str) -> tuple[int, int]:
    """Raise a ticket; return its id and its TicketRaised event's position."""
    r = await service.raise_ticket(
        Context(actor=CUSTOMERS[0]), subject=subject, description="details", category_id=1
    )
    return r.ticket.id, r.events[0].position


async def _projected(pool: asyncpg.Pool) -> set[int]:
    return {r["id"] for r in await pool.fetch("SELECT id FROM ticket_summaries")}


async def _checkpoints(pool: asyncpg.Pool) -> set[int]:
    return {r["position"] for r in await pool.fetch("SELECT position FROM projection_checkpoints")}


def _failure_logs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "ticketing.projections" and r.levelno >= logging.ERROR
    ]


async def test_a_poison_event_stops_the_runner_visibly_and_is_applied_once_fixed(
    proj_service: CommandService,
    fresh_pool: asyncpg.Pool,
    redis_client: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="ticketing.projections")
    first, _ = await _raise(proj_service, "before the constraint")
    await proj_catch_up(fresh_pool)
    body, status = await readiness(fresh_pool, redis_client)
    assert status == 200 and body.projections.status == "ok"

    await fresh_pool.execute(
        f"ALTER TABLE ticket_summaries ADD CONSTRAINT poison_test CHECK (subject <> '{POISON}')"
    )
    fine, fine_pos = await _raise(proj_service, "fine, before the poison")
    poison, poison_pos = await _raise(proj_service, POISON)
    after, _ = await _raise(proj_service, "fine, after the poison")

    async def failure_recorded() -> bool:
        await catch_up(fresh_pool)  # one batch of three: it fails, then goes one by one
        return await projection_failure(fresh_pool) is not None

    await proj_wait_until(failure_recorded, "the runner to record the poison event")

    # Everything before the poison is applied; the poison and what follows are not.
    assert await _projected(fresh_pool) == {first, fine}
    assert await _checkpoints(fresh_pool) == {fine_pos}
    failure = await projection_failure(fresh_pool)
    assert failure is not None
    assert failure.position == poison_pos
    assert "CheckViolation" in failure.error and "poison_test" in failure.error
    assert len(_failure_logs(caplog)) == 1

    # Retries (every worker tick) neither move the checkpoint, nor skip the event, nor
    # log the same failure again, nor restart its clock.
    for _ in range(3):
        assert await catch_up(fresh_pool) == 0
    assert await _projected(fresh_pool) == {first, fine}
    assert await _checkpoints(fresh_pool) == {fine_pos}
    assert await projection_failure(fresh_pool) == failure
    assert len(_failure_logs(caplog)) == 1

    body, status = await readiness(fresh_pool, redis_client)
    assert status == 503
    assert body.status == "failing" and body.projections.status == "failing"
    assert body.projections.failing_position == poison_pos
    assert body.projections.failing_since == failure.since
    assert body.projections.detail is not None and "poison_test" in body.projections.detail
    assert (body.projections.events_behind or 0) >= 2
    assert body.database.status == "ok"

    # Fixed: the poison event and everything after it are applied, exactly once.
    await fresh_pool.execute("ALTER TABLE ticket_summaries DROP CONSTRAINT poison_test")
    await proj_catch_up(fresh_pool)
    assert await _projected(fresh_pool) == {first, fine, poison, after}
    assert await projection_failure(fresh_pool) is None
    await heartbeat.beat(fresh_pool, "a worker", datetime.now(UTC))  # else: no worker, degraded
    body, status = await readiness(fresh_pool, redis_client)
    assert status == 200 and body.status == "ok" and body.projections.status == "ok"
    logged = await fresh_pool.fetchval(
        "SELECT count(*) FROM ticket_logs WHERE ticket_id = $1", poison
    )
    assert logged == 1
