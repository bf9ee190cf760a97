"""Keyword search over many tickets, and the projection rebuild, measured on their own.

``python -m bench.keyword_index [--tickets N] [--identical M] [--queries Q]`` creates a
scratch database (on ``TICKETING_DATABASE_URL``, else postgresql://postgres@127.0.0.1:5432/
postgres), seeds N tickets with ``bench.seed`` (subjects draw 3 of ``WORDS`` each, so a
word matches about 5% of them), then M newer identical tickets ("Printer on fire" / "It
smokes since the last update", as the bench's raise phase adds), and prints:

- a raw read-and-decode of the log (``EventStore.read_all`` pages of 5000, as the bench)
  and ``projections rebuild`` over it (events/s, their ratio, the rebuild's phases);
- Q single-connection keyword lists (``GET /v1/tickets?q=word&limit=20`` minus HTTP:
  ``queries.list_tickets_consistent``), one word of ``WORDS`` or, one time in ten, a word
  no ticket contains, and the count of the same query's matches (``queries.count_tickets``:
  every ticket of the lexeme, from the term index), with p50/p90/p99/max; a count must
  agree with its page.

The scratch database is dropped at the end unless ``--keep``; ``--reuse NAME`` measures
an existing one (seeded by an earlier ``--keep`` run) instead of seeding. ``--tickets 0
--identical 0 --lifecycle-events 1000000`` measures the rebuild over a log of whole ticket
lifecycles (about nine events per ticket) instead of one of raised tickets only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench import rawread
from bench.loadgen import percentile
from bench.seed import WORDS, seed_lifecycles, seed_tickets

ABSENT = ("zeppelin", "quokka", "marzipan", "trombone", "glacier")
IDENTICAL = ("Printer on fire", "It smokes since the last update")
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def _stats(ms: list[float]) -> str:
    s = sorted(ms)
    return (
        f"p50 {percentile(s, 50):7.2f} ms  p90 {percentile(s, 90):7.2f} ms  "
        f"p99 {percentile(s, 99):7.2f} ms  max {s[-1]:7.2f} ms"
    )


async def keyword_latency(dsn: str, requests: int, limit: int = 20) -> dict[str, list[float]]:
    from projections import queries
    from projections.queries import TicketFilter
    from services.db import create_pool

    pool = await create_pool(dsn, min_size=1, max_size=1)
    rnd = random.Random(7)
    words = [
        rnd.choice(ABSENT) if rnd.random() < 0.1 else rnd.choice(WORDS) for _ in range(requests)
    ]
    out: dict[str, list[float]] = {"term index": [], "count": []}
    try:
        for w in words[:20]:  # warm the caches and the prepared statements
            await queries.list_tickets(
                pool, TicketFilter(q=w), limit=limit, now=datetime.now(UTC), timezone="UTC"
            )
        mismatches = 0
        for w in words:
            now = datetime.now(UTC)
            t = time.perf_counter()
            rows, _, _ = await queries.list_tickets_consistent(
                pool, TicketFilter(q=w), limit=limit, now=now, timezone="UTC", wait_ms=500
            )
            out["term index"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            n = await queries.count_tickets(pool, TicketFilter(q=w), now=now, timezone="UTC")
            out["count"].append((time.perf_counter() - t) * 1000)
            if n < len(rows) or (len(rows) < limit and n != len(rows)):
                mismatches += 1
        if mismatches:
            raise RuntimeError(f"{mismatches} keyword counts disagree with their pages")
    finally:
        await pool.close()
    return out


async def main_async(args: argparse.Namespace) -> int:
    from projections.rebuild import rebuild_all
    from services.db import migrate
    from services.embedded import with_database

    admin = args.dsn
    name = args.reuse or f"kwbench_{uuid.uuid4().hex[:8]}"
    dsn = with_database(admin, name)
    if not args.reuse:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
    try:
        if not args.reuse:
            await migrate(dsn)
            say(f"scratch database {name}: seeding {args.tickets:,} tickets ...")
            started = time.perf_counter()
            if args.tickets:
                await seed_tickets(dsn, args.tickets, batch=min(50_000, args.tickets))
            if args.lifecycle_events:
                stored = await seed_lifecycles(dsn, args.lifecycle_events)
                say(f"  {stored:,} events of whole ticket lifecycles")
            if args.identical:
                await seed_tickets(
                    dsn,
                    args.identical,
                    batch=min(50_000, args.identical),
                    seed=43,
                    text=IDENTICAL,
                    spread_seconds=10,
                    overdue_every=0,
                )
            say(f"  seeded in {time.perf_counter() - started:.1f} s")
        if not args.skip_rebuild:
            n, secs = await rawread.raw_read_decode(dsn)
            say(f"raw read-and-decode: {n:,} events in {secs:.1f} s = {n / secs:,.0f} events/s")
            started = time.perf_counter()
            stats = await rebuild_all(dsn)
            rsecs = time.perf_counter() - started
            say(
                f"projections rebuild: {stats['events']:,} events in {rsecs:.1f} s = "
                f"{stats['events'] / rsecs:,.0f} events/s; phases {stats['phases']}"
            )
            say(f"rebuild / raw read-and-decode = {(n / secs and (n / rsecs) / (n / secs)):.3f}")
        if args.queries:
            conn = await asyncpg.connect(dsn)
            try:
                tickets = await conn.fetchval("SELECT count(*) FROM ticket_summaries")
                terms = await conn.fetchval("SELECT count(*) FROM ticket_search_terms")
                size = await conn.fetchval(
                    "SELECT pg_size_pretty(pg_total_relation_size('ticket_search_terms'))"
                )
            finally:
                await conn.close()
            say(f"keyword lists over {tickets:,} tickets ({terms:,} term rows, {size}):")
            lat = await keyword_latency(dsn, args.queries)
            for plan, ms in lat.items():
                say(f"  {plan:14s} {len(ms)} queries: {_stats(ms)}")
    finally:
        if not args.keep:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            say(f"dropped {name}")
        else:
            say(f"kept {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.keyword_index", description=__doc__)
    p.add_argument("--tickets", type=int, default=1_000_000)
    p.add_argument("--identical", type=int, default=20_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument(
        "--dsn",
        default=os.environ.get(
            "TICKETING_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
        help="server to create the scratch database on",
    )
    p.add_argument(
        "--lifecycle-events",
        type=int,
        default=0,
        help="also seed this many events of whole ticket lifecycles (raise, assign, "
        "messages, status changes, close, rating): a log with several events per ticket",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch database")
    p.add_argument("--reuse", metavar="NAME", help="measure an existing scratch database")
    p.add_argument("--skip-rebuild", action="store_true")
    args = p.parse_args(argv)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
