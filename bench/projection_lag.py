"""Projection lag and rebuild throughput.

Appends about N events through the command service (woken worker: a real
``python -m workers.main`` process fed through Redis), measures for each acknowledged
command how long until the read models include it (p50/p99), then optionally bulk-appends
more events straight into the store and times ``rebuild_all`` (events/s).

    .venv/bin/python -m bench.projection_lag --events 5000 --bulk 200000 \
        --dsn postgresql://postgres@127.0.0.1/postgres --redis redis://127.0.0.1:6379/1

``--dsn`` is an admin DSN: a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from domain.events import Actor, MessagePosted, SlaTargets, TicketRaised
from projections.consistency import projections_checkpoint
from projections.rebuild import rebuild_all
from services.commands import CommandService, Context
from services.db import create_pool, migrate
from services.embedded import with_database
from services.eventstore import EventStore, Metadata, NewEvent
from services.settings import load_settings
from workers.waker import RedisWaker

ROOT = Path(__file__).resolve().parents[1]
AGENT = Actor(id="agent-b", role="agent", name="Bench Agent")
Ack = tuple[tuple[int, int], float]  # (checkpoint, acknowledged at)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def drive(service: CommandService, target: int, concurrency: int, acks: list[Ack]) -> None:
    """Run ``concurrency`` clients until ``target`` events; record (checkpoint, ack time)."""
    count = 0

    async def client(n: int) -> None:
        nonlocal count
        rng = random.Random(n)
        actor = Actor(id=f"cust-{n}", role="customer", name=None)
        while count < target:
            r = await service.raise_ticket(
                Context(actor=actor), subject="bench", description="lag probe", category_id=1
            )
            acks.append((r.events[-1].checkpoint, time.perf_counter()))
            count += len(r.events)
            for _ in range(rng.randint(0, 3)):
                m = await service.post_message(Context(actor=AGENT), r.ticket.id, body="reply")
                acks.append((m.events[-1].checkpoint, time.perf_counter()))
                count += len(m.events)

    await asyncio.gather(*(client(i) for i in range(concurrency)))


async def measure_lag(pool: asyncpg.Pool, acks: list[Ack], done: asyncio.Event) -> list[float]:
    lags: list[float] = []
    while True:
        cp = await projections_checkpoint(pool)
        now = time.perf_counter()
        still = []
        for checkpoint, at in acks:  # no await in this loop: the list cannot change under it
            if checkpoint <= cp:
                lags.append((now - at) * 1000)
            else:
                still.append((checkpoint, at))
        acks[:] = still
        if done.is_set() and not still:
            return lags
        await asyncio.sleep(0.002)


async def bulk_append(pool: asyncpg.Pool, events: int) -> None:
    """Append ``events`` quickly: a raise and nine replies per stream, one append each."""
    store = EventStore(pool)
    meta = Metadata(actor=AGENT, dialect="native")
    now = datetime.now(UTC)
    sla = SlaTargets(3600, 14400)
    next_id = int(await pool.fetchval("SELECT coalesce(max(stream_id), 0) FROM events")) + 1_000_000

    async def one(sid: int) -> None:
        evs = [
            NewEvent(
                TicketRaised(
                    sid,
                    f"bulk {sid}",
                    "bulk description",
                    1,
                    "medium",
                    Actor(id=f"c{sid % 97}", role="customer"),
                    sla,
                ),
                meta,
                now,
            )
        ] + [
            NewEvent(MessagePosted(sid * 10 + i, AGENT, "bulk reply body"), meta, now)
            for i in range(9)
        ]
        await store.append(sid, 0, None, evs)

    streams = events // 10
    for start in range(0, streams, 200):
        await asyncio.gather(*(one(next_id + i) for i in range(start, min(streams, start + 200))))


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=3000)
    ap.add_argument("--bulk", type=int, default=0, help="extra events appended before rebuild")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--dsn", default=os.environ.get("TICKETING_DATABASE_URL"))
    ap.add_argument("--redis", default=os.environ.get("TICKETING_REDIS_URL"))
    args = ap.parse_args()
    if not args.dsn or not args.redis:
        sys.exit("pass --dsn (admin PostgreSQL DSN) and --redis, or set TICKETING_*_URL")
    name = f"ticketing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(args.dsn, name)
    queue = f"ticketing:bench:{name}"
    worker = None
    try:
        await migrate(dsn)
        env = {
            **os.environ,
            "TICKETING_DATABASE_URL": dsn,
            "TICKETING_REDIS_URL": args.redis,
            "TICKETING_LOG_LEVEL": "WARNING",
        }
        worker = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, started once
            [sys.executable, "-m", "workers.main", "--queue", queue], cwd=ROOT, env=env
        )
        pool = await create_pool(dsn, min_size=args.concurrency, max_size=args.concurrency + 4)
        waker = RedisWaker(args.redis, queue_name=queue)
        service = CommandService(pool, load_settings({}).sla_policy, waker=waker)
        await asyncio.sleep(1.0)  # let the worker start
        acks: list[Ack] = []
        done = asyncio.Event()
        monitor = asyncio.create_task(measure_lag(pool, acks, done))
        t0 = time.perf_counter()
        await drive(service, args.events, args.concurrency, acks)
        elapsed = time.perf_counter() - t0
        done.set()
        lags = await monitor
        total = await pool.fetchval("SELECT count(*) FROM events")
        print(
            f"appended {total} events in {elapsed:.1f}s ({total / elapsed:.0f} events/s, "
            f"{args.concurrency} clients, commands acknowledged: {len(lags)})"
        )
        p50 = statistics.median(lags)
        print(
            f"projection lag (ack -> visible in read models): p50 {p50:.1f} ms"
            f"  p99 {pct(lags, 99):.1f} ms  max {max(lags):.1f} ms"
        )
        await waker.close()
        worker.terminate()
        worker.wait(30)
        worker = None
        if args.bulk:
            t1 = time.perf_counter()
            await bulk_append(pool, args.bulk)
            print(f"bulk-appended {args.bulk} events in {time.perf_counter() - t1:.1f}s")
        await pool.close()
        stats = await rebuild_all(dsn)
        print(
            f"rebuild: {stats['events']} events in {stats['seconds']:.2f}s "
            f"= {stats['events_per_s']:.0f} events/s"
        )
    finally:
        if worker is not None:
            worker.kill()
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
