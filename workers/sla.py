"""The SLA sweep: find tickets past a due time and record ``SlaBreached`` exactly once.

Candidates come from the projections' work lists: the first-response queue table and
the summaries' partial resolution index (only unresolved, unpaused, unbreached tickets
are in them, so a sweep touches the overdue tickets and nothing else, however many are
open). The projection is only a hint:
every candidate is re-decided by the domain on the ticket's own stream through
``CommandService.record_sla_breach``, whose optimistic concurrency and ``breach_due``
(None once a breach is recorded) make the breach exactly-once per target per breach with
any number of sweepers running, across restarts, and whatever the projection's lag.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import asyncpg
from prometheus_client import Counter

from domain.errors import DomainError
from domain.events import SYSTEM, SlaTarget
from services.commands import CommandService, Context

log = logging.getLogger("ticketing.sla")

BREACHES = Counter(
    "ticketing_sla_breaches_recorded_total",
    "SlaBreached events appended by this process's SLA sweeps",
    ["target"],
)

# The resolution list's WHERE clause repeats its partial index's predicate word for word
# so the planner can prove the index applies; ``due >= $2`` bounds each keyset page from below.
_CANDIDATES: dict[SlaTarget, str] = {
    # a table of its own, kept by the projections (projections/sla_queue.py)
    "first_response": """
        SELECT ticket_id AS id, due_at AS due FROM sla_first_response_queue
        WHERE due_at <= $1
          AND due_at >= $2
          AND (due_at, ticket_id) > ($2, $3)
        ORDER BY due_at, ticket_id
        LIMIT $4
    """,
    "resolution": """
        SELECT id, resolution_due_at AS due FROM ticket_summaries
        WHERE status NOT IN ('resolved', 'closed') AND NOT sla_paused
          AND NOT resolution_breached
          AND resolution_due_at <= $1
          AND resolution_due_at >= $2
          AND (resolution_due_at, id) > ($2, $3)
        ORDER BY resolution_due_at, id
        LIMIT $4
    """,
}

# Targets missed between two sweeps (met late, or the ticket paused, resolved, closed or
# retargeted past its due time): both targets of each are re-decided.
_MISSED = """
    SELECT id, sla_missed_due AS due FROM ticket_summaries
    WHERE sla_missed_due IS NOT NULL
      AND sla_missed_due <= $1
      AND sla_missed_due >= $2
      AND (sla_missed_due, id) > ($2, $3)
    ORDER BY sla_missed_due, id
    LIMIT $4
"""

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_CONCURRENCY = 8
SWEEP_TIMEOUT_S = 600  # the arq time limit of one sweep (workers.main)


def candidate_sql(target: SlaTarget) -> str:
    """The candidate query of a target (benchmarks and tests EXPLAIN it)."""
    return _CANDIDATES[target]


async def candidates(
    pool: asyncpg.Pool, target: SlaTarget, now: datetime, batch: int = 1000
) -> list[int]:
    """Every ticket the projection says is past ``target``'s due time at ``now``, paged."""
    found: list[int] = []
    after_due, after_id = EPOCH, 0
    while True:
        rows = await pool.fetch(_CANDIDATES[target], now, after_due, after_id, batch)
        found.extend(r["id"] for r in rows)
        if len(rows) < batch:
            return found
        after_due, after_id = rows[-1]["due"], rows[-1]["id"]


async def sweep_once(
    pool: asyncpg.Pool,
    commands: CommandService,
    now: datetime,
    batch: int = 1000,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> int:
    """Record every breach due by ``now``; return how many SlaBreached events were appended.

    ``now`` selects the candidates; the domain decides each one at the command service's
    clock (the same clock in production; tests give both the same fake clock). Pages of
    ``batch`` candidates are read by keyset on ``(due, id)``, so a page never re-reads
    rows whose breach the projection has not caught up with yet.
    """
    sweep_id = f"sla-sweep-{uuid.uuid4().hex[:12]}"
    ctx = Context(actor=SYSTEM, dialect="worker", request_id=sweep_id, correlation_id=sweep_id)
    gate = asyncio.Semaphore(max(1, concurrency))
    recorded = 0

    async def one(ticket_id: int, *, target: SlaTarget) -> int:
        async with gate:
            try:
                result = await commands.record_sla_breach(ctx, ticket_id, target=target)
            except DomainError as exc:  # e.g. a projection row for a ticket that vanished
                log.warning("sla sweep: ticket %s %s: %s", ticket_id, target, exc.message)
                return 0
            except Exception:  # one bad ticket must not stop the sweep; next sweep retries
                log.exception("sla sweep: ticket %s %s failed", ticket_id, target)
                return 0
        if result.events:
            BREACHES.labels(target=target).inc(len(result.events))
            log.info("sla breached: ticket %s %s", ticket_id, target)
        return len(result.events)

    async def both(ticket_id: int) -> int:
        # in order: one ticket's two breaches must not race for one stream version
        first = await one(ticket_id, target="first_response")
        return first + await one(ticket_id, target="resolution")

    # Missed ones first (their due times are the oldest), then first-response before
    # resolution: one ticket's two breaches then do not race for one stream version,
    # and they are recorded in the order they happened.
    recorded += await _pages(pool, _MISSED, now, batch, both)
    for target in ("first_response", "resolution"):
        recorded += await _pages(pool, _CANDIDATES[target], now, batch, partial(one, target=target))
    return recorded


async def _pages(
    pool: asyncpg.Pool,
    sql: str,
    now: datetime,
    batch: int,
    each: Callable[[int], Awaitable[int]],
) -> int:
    """Run ``each`` on every candidate of ``sql``, a page at a time (keyset on due, id)."""
    recorded = 0
    after_due, after_id = EPOCH, 0
    while True:
        rows = await pool.fetch(sql, now, after_due, after_id, batch)
        if rows:
            recorded += sum(await asyncio.gather(*(each(r["id"]) for r in rows)))
        if len(rows) < batch:
            return recorded
        after_due, after_id = rows[-1]["due"], rows[-1]["id"]


async def sla_sweep(ctx: dict[str, Any]) -> int:
    """arq job: one sweep with the worker's pool and command service (see workers.main)."""
    commands: CommandService = ctx["commands"]
    return await sweep_once(ctx["pool"], commands, commands.clock())


def _gate_key(ctx: dict[str, Any]) -> str:
    settings = ctx.get("settings")
    where = getattr(settings, "database_url", None) or ""
    return "ticketing:sla-sweep-gate:" + hashlib.sha256(where.encode()).hexdigest()[:16]


async def sla_sweep_tick(ctx: dict[str, Any]) -> int:
    """arq cron job, every second: sweep if ``TICKETING_SLA_SWEEP_SECONDS`` have passed.

    A cron schedule is fixed at import, before settings are read, and cannot express
    every interval; so the tick runs each second and a Redis gate shared by all workers
    (``SET NX`` with an expiry) lets one sweep through per interval. The gate is held for
    the sweep's time limit while it runs, then re-armed for one interval from its end, so
    sweeps never overlap and a crashed worker blocks nobody for longer than the limit.
    """
    settings = ctx.get("settings")
    interval_ms = max(1, int(1000 * float(getattr(settings, "sla_sweep_seconds", 30.0))))
    redis = ctx.get("redis")
    key = _gate_key(ctx)
    if redis is not None:
        if not await redis.set(key, b"1", px=max(interval_ms, SWEEP_TIMEOUT_S * 1000), nx=True):
            return 0
    try:
        return await sla_sweep(ctx)
    finally:
        if redis is not None:
            await redis.set(key, b"1", px=interval_ms)


async def breach_count(pool: asyncpg.Pool) -> int:
    """All SlaBreached events ever recorded (for /metrics; served by a partial index)."""
    count = await pool.fetchval("SELECT count(*) FROM events WHERE type = 'SlaBreached'")
    return int(count or 0)
