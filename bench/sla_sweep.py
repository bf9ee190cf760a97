"""SLA sweep time for N open tickets of which 1% are overdue.

The 99% not yet due are COPYed straight into ``ticket_summaries``, with their rows of the
first-response work list (the sweep reads only the work lists, and never their events:
``sla_first_response_queue`` and the summaries' partial resolution index); the 1% overdue
are raised through the command service 5 hours in the past (urgent: 1h/4h, no agent
reply, so both targets are due) and projected, so the domain can re-decide each one from
its stream.
Three sweeps are timed: the one that records every breach, one right after it (the
projection has not caught up: every candidate is re-decided and refused), and one after
catch-up (nothing to do: the work lists hold no due rows).

    .venv/bin/python -m bench.sla_sweep [--tickets 1000000] [--quick] \
        --dsn postgresql://postgres@127.0.0.1/postgres

``--dsn`` is an admin DSN: a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg

from domain.events import Actor
from domain.sla import parse_targets
from projections import sla_queue
from projections.consistency import projections_checkpoint
from projections.runner import catch_up
from services.commands import CommandService, Context
from services.db import create_pool, migrate
from services.embedded import with_database
from services.eventstore import EventStore
from workers.sla import candidate_sql, sweep_once

POLICY = parse_targets("urgent=1h/4h,high=4h/24h,medium=12h/72h,low=24h/168h")
CUSTOMER = Actor(id="bench-customer", role="customer", name="Bench")
SYNTHETIC_BASE = 1_000_000_000  # ids of COPYed rows, far above the ticket sequence

COLUMNS = (
    "id",
    "subject",
    "description",
    "status",
    "priority",
    "category_id",
    "requester_id",
    "requester_role",
    "created_at",
    "updated_at",
    "version",
    "first_response_due_at",
    "resolution_due_at",
    "first_response_at",
    "sla_paused",
    "last_activity_at",
    "last_position",
    "state",
)


def synthetic_rows(n: int, now: datetime) -> list[tuple[object, ...]]:
    """Open tickets not yet due: a realistic mix of statuses, priorities, met targets."""
    rng = random.Random(7)
    rows: list[tuple[object, ...]] = []
    for i in range(n):
        created = now - timedelta(minutes=rng.randint(0, 50))
        priority = rng.choice(("low", "medium", "high"))
        targets = POLICY[priority]  # type: ignore[index]
        answered = rng.random() < 0.5
        status = rng.choice(("open", "open", "in_progress", "on_hold"))
        rows.append(
            (
                SYNTHETIC_BASE + i,
                f"Synthetic ticket {i}",
                "Not due yet",
                status,
                priority,
                1 + i % 5,
                f"cust-{i % 50_000}",
                "customer",
                created,
                created,
                1,
                created + timedelta(seconds=targets.first_response_s),
                created + timedelta(seconds=targets.resolution_s),
                created + timedelta(minutes=1) if answered else None,
                status == "on_hold",
                created,
                0,
                b"",
            )
        )
    return rows


async def settle(pool: asyncpg.Pool) -> None:
    """Catch the projections up to the head of the log (commit-safe readers may wait
    for other transactions in the cluster to finish first)."""
    store = EventStore(pool)
    while await projections_checkpoint(pool) != await store.head():
        if not await catch_up(pool):
            await asyncio.sleep(0.05)


async def explain(pool: asyncpg.Pool, now: datetime) -> dict[str, str]:
    plans: dict[str, str] = {}
    for target in ("first_response", "resolution"):
        rows = await pool.fetch(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + candidate_sql(target),
            now,
            datetime(1970, 1, 1, tzinfo=UTC),
            0,
            1000,
        )
        plans[target] = "\n".join(r[0] for r in rows)
    return plans


async def run(admin_dsn: str, tickets: int, concurrency: int, batch: int) -> dict[str, object]:
    name = f"bench_sla_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(admin_dsn, name)
    try:
        await migrate(dsn)
        pool = await create_pool(dsn, min_size=4, max_size=concurrency + 4)
        now = datetime.now(UTC)
        overdue = max(1, tickets // 100)
        not_due = tickets - overdue

        t = time.perf_counter()
        async with pool.acquire() as conn:
            chunk = 100_000
            for start in range(0, not_due, chunk):
                rows = synthetic_rows(min(chunk, not_due - start), now)
                rows = [(r[0] + start, *r[1:]) for r in rows]  # type: ignore[operator]
                await conn.copy_records_to_table("ticket_summaries", records=rows, columns=COLUMNS)
            # their first-response work list, as the projections would keep it
            await conn.execute(sla_queue.rebuild_sql("public"))
        copy_s = time.perf_counter() - t

        t = time.perf_counter()
        past = now - timedelta(hours=5)
        raiser = CommandService(pool, POLICY, clock=lambda: past)
        gate = asyncio.Semaphore(concurrency)

        async def raise_one(i: int) -> None:
            async with gate:
                await raiser.raise_ticket(
                    Context(actor=CUSTOMER),
                    subject=f"Overdue {i}",
                    description="No reply for hours",
                    category_id=1,
                    priority="urgent",
                )

        await asyncio.gather(*(raise_one(i) for i in range(overdue)))
        await settle(pool)
        raise_s = time.perf_counter() - t
        async with pool.acquire() as conn:
            await conn.execute(f"VACUUM ANALYZE ticket_summaries, {sla_queue.TABLE}")
        open_rows = await pool.fetchval(
            "SELECT count(*) FROM ticket_summaries WHERE status NOT IN ('resolved', 'closed')"
        )

        sweeper = CommandService(pool, POLICY)
        now = datetime.now(UTC)
        plans = await explain(pool, now)
        t = time.perf_counter()
        recorded = await sweep_once(pool, sweeper, now, batch, concurrency=concurrency)
        sweep_s = time.perf_counter() - t
        t = time.perf_counter()
        stale = await sweep_once(pool, sweeper, now, batch, concurrency=concurrency)
        stale_s = time.perf_counter() - t
        await settle(pool)
        t = time.perf_counter()
        idle = await sweep_once(pool, sweeper, datetime.now(UTC), batch, concurrency=concurrency)
        idle_s = time.perf_counter() - t
        breaches = await pool.fetchval("SELECT count(*) FROM events WHERE type = 'SlaBreached'")
        await pool.close()
        return {
            "open_tickets": int(open_rows),
            "overdue_tickets": overdue,
            "breaches_recorded": recorded,
            "breach_events_in_log": int(breaches),
            "sweep_seconds": round(sweep_s, 3),
            "breaches_per_second": round(recorded / sweep_s, 1) if sweep_s else None,
            "stale_projection_sweep_seconds": round(stale_s, 3),
            "stale_projection_sweep_recorded": stale,
            "idle_sweep_seconds": round(idle_s, 4),
            "idle_sweep_recorded": idle,
            "setup_copy_seconds": round(copy_s, 1),
            "setup_raise_and_project_seconds": round(raise_s, 1),
            "concurrency": concurrency,
            "batch": batch,
            "plans": plans,
        }
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20,000 tickets")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--plans", action="store_true", help="print the EXPLAIN ANALYZE plans")
    args = parser.parse_args()
    tickets = 20_000 if args.quick else args.tickets
    result = asyncio.run(run(args.dsn, tickets, args.concurrency, args.batch))
    plans = result.pop("plans")
    print(json.dumps(result, indent=2))
    if args.plans:
        for target, plan in plans.items():  # type: ignore[attr-defined]
            print(f"\n-- {target} candidates\n{plan}")
    print(
        f"\nSLA sweep: {result['sweep_seconds']} s for {result['open_tickets']:,} open tickets, "
        f"{result['overdue_tickets']:,} overdue ({result['breaches_recorded']:,} breaches "
        f"recorded); idle sweep {result['idle_sweep_seconds']} s"
    )


if __name__ == "__main__":
    main()
