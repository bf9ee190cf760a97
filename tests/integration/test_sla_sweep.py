"""The SLA sweep against real PostgreSQL/Redis: breaches exactly once, with several sweepers.

Targets are seconds long and time is an input: every CommandService shares a fake clock
and ``sweep_once`` gets the same ``now``, so nothing here sleeps or depends on speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from domain.events import Actor, SlaBreached
from domain.sla import parse_targets
from projections.consistency import projections_checkpoint
from projections.queries import TicketFilter, list_tickets
from projections.runner import catch_up
from services.commands import CommandService, Context
from services.eventstore import EventStore
from services.settings import load_settings
from workers import main as worker_main
from workers.sla import breach_count, candidate_sql, sla_sweep_tick, sweep_once

ROOT = Path(__file__).resolve().parents[2]
POLICY = parse_targets("urgent=2s/4s,high=1h/2h,medium=12h/72h,low=24h/168h")
# A Sunday of a DST change in Berlin: "due today" must use the local day.
T0 = datetime(2024, 3, 31, 8, 0, tzinfo=UTC)
CUSTOMER = Actor(id="cust-sla", role="customer", name="Cass")
AGENT = Actor(id="agent-sla", role="agent", name="Abe")


async def settle(pool: asyncpg.Pool) -> None:
    """Catch the projections up to the head of the log.

    Commit-safe readers only take events older than every running transaction in the
    cluster, so a busy neighbour (another test creating a database) can hold them back
    for a moment: catch up until the checkpoint reaches the head, within a bound.
    """
    store = EventStore(pool)
    for _ in range(1200):
        await catch_up(pool)
        if await projections_checkpoint(pool) == await store.head():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the projections did not reach the head of the log within 60 s")


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, seconds: float) -> datetime:
        self.now = T0 + timedelta(seconds=seconds)
        return self.now


def services(pool: asyncpg.Pool, clock: FakeClock, n: int = 2) -> list[CommandService]:
    return [CommandService(pool, POLICY, clock=clock) for _ in range(n)]


async def raise_ticket(c: CommandService, priority: str = "urgent", subject: str = "Down") -> int:
    r = await c.raise_ticket(
        Context(actor=CUSTOMER),
        subject=subject,
        description="Nothing works",
        category_id=1,
        priority=priority,  # type: ignore[arg-type]
    )
    return r.ticket.id


async def breaches_of(c: CommandService, ticket_id: int) -> list[SlaBreached]:
    _, events = await c.load(ticket_id)
    return [e.event for e in events if isinstance(e.event, SlaBreached)]


async def sweep_concurrently(
    pool: asyncpg.Pool, cs: list[CommandService], now: datetime, *, batch: int = 1000
) -> int:
    done = await asyncio.gather(*(sweep_once(pool, c, now, batch) for c in cs))
    return sum(done)


# --- exactly once ------------------------------------------------------------------------------


async def test_unanswered_urgent_ticket_breaches_first_response_then_resolution_once_each(
    fresh_pool: asyncpg.Pool,
) -> None:
    clock = FakeClock(T0)
    c1, c2 = services(fresh_pool, clock)
    tid = await raise_ticket(c1)
    await settle(fresh_pool)

    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(1.999)) == 0
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(2)) == 1
    assert await breaches_of(c1, tid) == [
        SlaBreached(target="first_response", due_at=T0 + timedelta(seconds=2))
    ]
    # The projection has not seen the breach yet: the fold refuses a second one.
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(3)) == 0
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(3.5)) == 0

    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(4)) == 1
    for later in (5, 60, 3600):
        assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(later)) == 0
        await settle(fresh_pool)
    assert await breaches_of(c1, tid) == [
        SlaBreached(target="first_response", due_at=T0 + timedelta(seconds=2)),
        SlaBreached(target="resolution", due_at=T0 + timedelta(seconds=4)),
    ]
    _, events = await c1.load(tid)
    for e in events[1:]:
        assert e.metadata.actor.role == "system"
        assert e.metadata.dialect == "worker"
        assert e.occurred_at == e.recorded_at  # decided at the sweep's clock
    # Breaches appear in the ticket log, one row per event.
    logged = await fresh_pool.fetch(
        "SELECT action, actor_role FROM ticket_logs WHERE ticket_id = $1 ORDER BY position", tid
    )
    assert [(r["action"], r["actor_role"]) for r in logged] == [
        ("TicketRaised", "customer"),
        ("SlaBreached", "system"),
        ("SlaBreached", "system"),
    ]
    row = await fresh_pool.fetchrow(
        "SELECT first_response_breached, resolution_breached FROM ticket_summaries WHERE id = $1",
        tid,
    )
    assert row is not None and row["first_response_breached"] and row["resolution_breached"]


async def test_many_tickets_and_four_sweepers_with_small_pages_record_each_breach_once(
    fresh_pool: asyncpg.Pool,
) -> None:
    clock = FakeClock(T0)
    sweepers = services(fresh_pool, clock, 4)
    ids = [await raise_ticket(sweepers[i % 4], subject=f"t{i}") for i in range(40)]
    answered = set(ids[::4])  # an agent answered every fourth: no first-response breach
    for tid in answered:
        await sweepers[0].post_message(Context(actor=AGENT), tid, body="Looking")
    await settle(fresh_pool)
    first = await sweep_concurrently(fresh_pool, sweepers, clock.set(3), batch=7)
    assert first == len(ids) - len(answered)
    # Another round before the projection catches up, then after: nothing new.
    assert await sweep_concurrently(fresh_pool, sweepers, clock.set(3), batch=7) == 0
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, sweepers, clock.set(4), batch=7) == len(ids)
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, sweepers, clock.set(10), batch=3) == 0
    rows = await fresh_pool.fetch(
        "SELECT stream_id, data->>'target' AS target FROM events WHERE type = 'SlaBreached'"
    )
    counted = Counter((r["stream_id"], r["target"]) for r in rows)
    assert all(n == 1 for n in counted.values())
    assert {s for s, t in counted if t == "resolution"} == set(ids)
    assert {s for s, t in counted if t == "first_response"} == set(ids) - answered
    assert await breach_count(fresh_pool) == len(rows)


_PROCESS_SWEEP = """
import asyncio, sys
from datetime import datetime
from domain.sla import parse_targets
from services.commands import CommandService
from services.db import create_pool
from workers.sla import sweep_once

async def main():
    dsn, policy, rounds = sys.argv[1], sys.argv[3], int(sys.argv[4])
    now = datetime.fromisoformat(sys.argv[2])
    pool = await create_pool(dsn, min_size=1, max_size=8)
    commands = CommandService(pool, parse_targets(policy), clock=lambda: now)
    total = 0
    for _ in range(rounds):
        total += await sweep_once(pool, commands, now, batch=5)
    await pool.close()
    print(total)

asyncio.run(main())
"""


async def test_two_worker_processes_record_each_breach_exactly_once(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    clock = FakeClock(T0)
    (c,) = services(fresh_pool, clock, 1)
    ids = [await raise_ticket(c, subject=f"p{i}") for i in range(25)]
    await settle(fresh_pool)
    now = clock.set(10)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _PROCESS_SWEEP,
            fresh_dsn,
            now.isoformat(),
            "urgent=2s/4s,high=1h/2h,medium=12h/72h,low=24h/168h",
            "3",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [await p.communicate() for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err.decode()
    recorded = sum(int(out.decode().strip()) for out, _ in outputs)
    assert recorded == 2 * len(ids)
    for tid in ids:
        assert sorted(b.target for b in await breaches_of(c, tid)) == [
            "first_response",
            "resolution",
        ]


# --- the rules the sweep relies on ----------------------------------------------------------


async def test_a_ticket_on_hold_does_not_breach_while_on_hold(fresh_pool: asyncpg.Pool) -> None:
    clock = FakeClock(T0)
    c1, c2 = services(fresh_pool, clock)
    tid = await raise_ticket(c1)
    clock.set(0.5)
    await c1.change_status(Context(actor=AGENT), tid, status="on_hold")
    await settle(fresh_pool)
    for t in (2, 4, 100, 86_400):
        assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(t)) == 0
    assert await breaches_of(c1, tid) == []
    clock.set(86_400)
    await c1.change_status(Context(actor=AGENT), tid, status="in_progress")
    await settle(fresh_pool)
    # 0.5 s had run before the hold: 1.5 s more meets the 2 s first-response target.
    resumed = T0 + timedelta(seconds=86_400)
    assert await sweep_concurrently(fresh_pool, [c1, c2], resumed + timedelta(seconds=1.4)) == 0
    clock.now = resumed + timedelta(seconds=1.5)
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.now) == 1
    assert await breaches_of(c1, tid) == [
        SlaBreached(target="first_response", due_at=resumed + timedelta(seconds=1.5))
    ]


async def test_a_priority_change_past_its_new_target_breaches_with_the_new_due_time(
    fresh_pool: asyncpg.Pool,
) -> None:
    clock = FakeClock(T0)
    (c,) = services(fresh_pool, clock, 1)
    tid = await raise_ticket(c, priority="low")
    clock.set(10)
    await settle(fresh_pool)
    assert await sweep_once(fresh_pool, c, clock.now) == 0
    await c.change_priority(Context(actor=AGENT), tid, priority="urgent")
    await settle(fresh_pool)
    summary = await fresh_pool.fetchrow(
        "SELECT first_response_due_at, resolution_due_at FROM ticket_summaries WHERE id = $1", tid
    )
    assert summary is not None
    assert summary["first_response_due_at"] == T0 + timedelta(seconds=2)
    assert summary["resolution_due_at"] == T0 + timedelta(seconds=4)
    assert await sweep_once(fresh_pool, c, clock.now) == 2
    assert [b.due_at for b in await breaches_of(c, tid)] == [
        T0 + timedelta(seconds=2),
        T0 + timedelta(seconds=4),
    ]


async def test_a_reopened_ticket_breaches_its_fresh_resolution_target_once(
    fresh_pool: asyncpg.Pool,
) -> None:
    clock = FakeClock(T0)
    c1, c2 = services(fresh_pool, clock)
    tid = await raise_ticket(c1)
    await c1.post_message(Context(actor=AGENT), tid, body="Fixed?")
    clock.set(5)
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.now) == 1  # resolution
    clock.set(6)
    await c1.close(Context(actor=AGENT), tid, resolution="restarted it")
    clock.set(100)
    await c1.reopen(Context(actor=CUSTOMER), tid, reason="broken again")
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(103.9)) == 0
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(104)) == 1
    await settle(fresh_pool)
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(500)) == 0
    assert [(b.target, b.due_at) for b in await breaches_of(c1, tid)] == [
        ("resolution", T0 + timedelta(seconds=4)),
        ("resolution", T0 + timedelta(seconds=104)),
    ]


async def test_targets_missed_between_two_sweeps_are_recorded_by_the_next_one(
    fresh_pool: asyncpg.Pool,
) -> None:
    # Each ticket passes a due time unmet, then something ends the sweep's view of it
    # before the next sweep: a late first answer, a late resolution or close, a hold.
    clock = FakeClock(T0)
    c1, c2 = services(fresh_pool, clock)
    answered, resolved, closed, held = [await raise_ticket(c1) for _ in range(4)]
    clock.set(2.5)  # past the 2 s first response target of every one
    await c1.post_message(Context(actor=AGENT), answered, body="Sorry for the wait")
    await c1.change_status(Context(actor=AGENT), held, status="on_hold")
    clock.set(4.5)  # past the 4 s resolution target
    await c1.change_status(Context(actor=AGENT), resolved, status="resolved")
    await c1.close(Context(actor=AGENT), closed)
    await settle(fresh_pool)
    rows = await fresh_pool.fetch(
        "SELECT id, sla_missed_due FROM ticket_summaries WHERE id = ANY($1::bigint[])",
        [answered, resolved, closed, held],
    )
    assert all(r["sla_missed_due"] == T0 + timedelta(seconds=2) for r in rows), rows
    recorded = await sweep_concurrently(fresh_pool, [c1, c2], clock.now)
    await settle(fresh_pool)
    first, resolution = T0 + timedelta(seconds=2), T0 + timedelta(seconds=4)
    assert [(b.target, b.due_at) for b in await breaches_of(c1, answered)] == [
        ("first_response", first),
        ("resolution", resolution),  # still unresolved: the running clock's breach
    ]
    for tid in (resolved, closed):
        assert [(b.target, b.due_at) for b in await breaches_of(c1, tid)] == [
            ("first_response", first),
            ("resolution", resolution),
        ]
    assert [(b.target, b.due_at) for b in await breaches_of(c1, held)] == [
        ("first_response", first)  # the resolution clock stopped at 2.5 s, before its due
    ]
    assert recorded == 2 + 2 + 2 + 1
    # recorded once: the work list empties and later sweeps add nothing
    assert (
        await fresh_pool.fetchval(
            "SELECT count(*) FROM ticket_summaries WHERE sla_missed_due IS NOT NULL"
        )
        == 0
    )
    assert await sweep_concurrently(fresh_pool, [c1, c2], clock.set(500)) == 0


# --- queries ------------------------------------------------------------------------------------


async def test_the_overdue_filter_lists_exactly_the_breached_unresolved_tickets(
    fresh_pool: asyncpg.Pool,
) -> None:
    clock = FakeClock(T0)
    (c,) = services(fresh_pool, clock, 1)
    ctx = Context(actor=AGENT)
    unanswered = await raise_ticket(c, subject="unanswered")
    answered = await raise_ticket(c, subject="answered")
    resolved = await raise_ticket(c, subject="resolved")
    held = await raise_ticket(c, subject="held")
    low = await raise_ticket(c, priority="low", subject="low")
    closed_late = await raise_ticket(c, subject="closed after its breach")
    clock.set(1)
    await c.post_message(ctx, answered, body="On it")
    await c.change_status(ctx, resolved, status="resolved")
    await c.change_status(ctx, held, status="on_hold")
    await settle(fresh_pool)
    assert await sweep_once(fresh_pool, c, clock.set(5)) == 5  # 2 first-response, 3 resolution
    await c.close(ctx, closed_late)
    await settle(fresh_pool)

    now = clock.now
    page, _ = await list_tickets(
        fresh_pool, TicketFilter(status="overdue"), limit=100, now=now, timezone="UTC"
    )
    overdue = {t.id for t in page}
    breached_unresolved = {
        r["id"]
        for r in await fresh_pool.fetch(
            "SELECT id FROM ticket_summaries WHERE resolution_breached "
            "AND status NOT IN ('resolved', 'closed')"
        )
    }
    assert overdue == breached_unresolved == {unanswered, answered}
    assert {t.id for t in page if t.first_response_breached} == {unanswered}
    assert low not in overdue and held not in overdue and resolved not in overdue

    # Due today in Berlin (a 23-hour day): the urgent ones are, the low one (due
    # tomorrow local time) is not; resolved/closed never are.
    page, _ = await list_tickets(
        fresh_pool, TicketFilter(status="duetoday"), limit=100, now=now, timezone="Europe/Berlin"
    )
    due_today = {t.id for t in page}
    assert unanswered in due_today and answered in due_today
    assert low not in due_today and resolved not in due_today and closed_late not in due_today


async def test_candidate_queries_can_use_the_work_lists_indexes(
    fresh_pool: asyncpg.Pool,
) -> None:
    async with fresh_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        for target, index in (
            ("first_response", "sla_first_response_queue_due_idx"),
            ("resolution", "ticket_summaries_resolution_due_idx"),
        ):
            plan = await conn.fetch(
                "EXPLAIN (FORMAT JSON) " + candidate_sql(target),  # type: ignore[arg-type]
                T0,
                T0 - timedelta(days=1),
                0,
                1000,
            )
            text = json.dumps(json.loads(plan[0][0]))
            assert index in text, text


# --- the arq wiring ---------------------------------------------------------------------------


def test_the_worker_registers_the_sla_sweep() -> None:
    names = {f.name for f in worker_main.functions}
    crons = {c.name for c in worker_main.cron_jobs}
    assert "sla_sweep" in names
    assert "sla_sweep_tick" in crons
    assert worker_main.WorkerSettings.cron_jobs is worker_main.cron_jobs


async def test_the_tick_lets_one_sweep_through_per_interval(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, servers: object
) -> None:
    clock = FakeClock(T0)
    (c,) = services(fresh_pool, clock, 1)
    first = await raise_ticket(c)
    await settle(fresh_pool)
    clock.set(3)
    redis = aioredis.Redis.from_url(servers.redis_url)  # type: ignore[attr-defined]
    settings = load_settings(
        {"TICKETING_DATABASE_URL": fresh_dsn, "TICKETING_SLA_SWEEP_SECONDS": "3600"}
    )
    ctx = {"pool": fresh_pool, "commands": c, "settings": settings, "redis": redis}
    before = (
        REGISTRY.get_sample_value(
            "ticketing_sla_breaches_recorded_total", {"target": "first_response"}
        )
        or 0.0
    )
    try:
        assert await sla_sweep_tick(ctx) == 1
        second = await raise_ticket(c)
        await settle(fresh_pool)
        clock.set(6)
        assert await sla_sweep_tick(ctx) == 0  # the gate is shut for an hour
        # the first ticket's resolution and the second's first response
        assert await sweep_once(fresh_pool, c, clock.now) == 2
    finally:
        await redis.delete(f"ticketing:sla-sweep-gate:{_digest(fresh_dsn)}")
        await redis.aclose()
    after = REGISTRY.get_sample_value(
        "ticketing_sla_breaches_recorded_total", {"target": "first_response"}
    )
    assert after == before + 2
    assert {b.target for b in await breaches_of(c, first)} == {"first_response", "resolution"}
    assert {b.target for b in await breaches_of(c, second)} == {"first_response"}


def _digest(dsn: str) -> str:
    import hashlib

    return hashlib.sha256(dsn.encode()).hexdigest()[:16]
