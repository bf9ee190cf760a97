"""Append rate through the command service, and the cost of the gap-safe global order.

    python -m bench.append_rate [--dsn postgresql://postgres@127.0.0.1/postgres]
                                [--seconds 5] [--writers 1,16,64]

Creates a scratch database on the server (dropped at the end unless --keep), migrates it
and measures:

1. events/s through ``CommandService`` with one event per command: ``raise`` (a new
   stream each time) and ``post_message`` on pre-raised tickets, at each writer count.
2. the price of the gap-safety technique (``transaction_id xid8`` per row, the
   ``(transaction_id, position)`` index, and the ``pg_snapshot_xmin`` filter on reads):
   - raw single-event INSERT transactions into the real ``events`` table versus an
     otherwise identical table without ``transaction_id`` and its index;
   - reader rows/s paging through the log with ``EventStore.read_all``'s query versus
     a plain ``position > $1 ORDER BY position`` query (which would skip late commits).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from domain.events import Actor
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets
from services.commands import CommandService, Context
from services.db import create_pool, migrate
from services.embedded import with_database
from services.eventstore import COLUMNS

CUSTOMER = Actor(id="bench-customer", role="customer", name="Bench")
AGENT = Actor(id="bench-agent", role="agent", name="Bench Agent")
TICKETS_PER_WRITER_SLOT = 64  # pre-raised tickets per writer, cycled so streams stay short

PLAIN_TABLE = """
CREATE TABLE events_plain (
    position        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id       bigint NOT NULL,
    version         integer NOT NULL CHECK (version > 0),
    type            text NOT NULL,
    schema          smallint NOT NULL,
    data            json NOT NULL,
    metadata        json NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    hash            bytea NOT NULL,
    prev_hash       bytea,
    CONSTRAINT events_plain_stream_version_key UNIQUE (stream_id, version)
);
CREATE INDEX events_plain_recorded_at_idx ON events_plain (recorded_at);
"""

RAW_INSERT = """
INSERT INTO {table} (stream_id, version, type, schema, data, metadata, occurred_at,
                     recorded_at, hash, prev_hash)
VALUES ($1, 1, 'MessagePosted', 1, $2::json, $3::json, $4, $4, $5, NULL)
"""

DATA = '{"type":"MessagePosted","message_id":1,"author":{"id":"a","role":"agent"},"body":"hi"}'
META = '{"actor":{"id":"a","role":"agent"}}'

READ_SAFE = f"""
SELECT {COLUMNS} FROM events
WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, position
LIMIT $3
"""
READ_NAIVE = f"""
SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2
"""


async def run_for(
    seconds: float, writers: int, op: Callable[[int, int], Awaitable[int]]
) -> tuple[int, float, list[float]]:
    """Run ``op(writer, i)`` in ``writers`` loops for ``seconds``; (events, elapsed, latencies)."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    counts = [0] * writers

    async def loop(w: int) -> None:
        i = 0
        while time.perf_counter() < stop:
            t = time.perf_counter()
            counts[w] += await op(w, i)
            latencies.append(time.perf_counter() - t)
            i += 1

    start = time.perf_counter()
    await asyncio.gather(*(loop(w) for w in range(writers)))
    return sum(counts), time.perf_counter() - start, latencies


def p99(latencies: list[float]) -> float:
    if len(latencies) < 2:
        return latencies[0] * 1000 if latencies else 0.0
    return statistics.quantiles(latencies, n=100)[98] * 1000


async def bench_commands(dsn: str, seconds: float, writer_counts: list[int]) -> list[list[str]]:
    rows: list[list[str]] = []
    for writers in writer_counts:
        rows += await bench_commands_at(dsn, seconds, writers)
    return rows


async def bench_commands_at(dsn: str, seconds: float, writers: int) -> list[list[str]]:
    rows: list[list[str]] = []
    policy = parse_targets(DEFAULT_SLA_TARGETS)
    pool = await create_pool(dsn, min_size=min(writers, 4), max_size=writers + 2)
    try:
        service = CommandService(pool, policy)
        customer, agent = Context(actor=CUSTOMER), Context(actor=AGENT)

        async def do_raise(w: int, i: int) -> int:
            r = await service.raise_ticket(
                customer, subject=f"bench {w}/{i}", description="load", category_id=1
            )
            return len(r.events)

        n, elapsed, lat = await run_for(seconds, writers, do_raise)
        rows.append(["raise", str(writers), f"{n / elapsed:,.0f}", f"{p99(lat):.1f}", str(n)])

        # pre-raised tickets, disjoint per writer: no conflicts, short streams
        tickets = [
            (
                await service.raise_ticket(
                    customer, subject="target", description="load", category_id=1
                )
            ).ticket.id
            for _ in range(writers * TICKETS_PER_WRITER_SLOT)
        ]

        async def do_message(w: int, i: int) -> int:
            tid = tickets[(i % TICKETS_PER_WRITER_SLOT) * writers + w]
            r = await service.post_message(agent, tid, body=f"reply {i}")
            return len(r.events)

        n, elapsed, lat = await run_for(seconds, writers, do_message)
        rows.append(
            ["post_message", str(writers), f"{n / elapsed:,.0f}", f"{p99(lat):.1f}", str(n)]
        )
    finally:
        await pool.close()
    return rows


async def bench_raw_insert(
    dsn: str, seconds: float, writers: int, rounds: int
) -> dict[str, list[float]]:
    pool = await create_pool(dsn, min_size=writers, max_size=writers)
    results: dict[str, list[float]] = {"events": [], "events_plain": []}
    next_stream = [10**12]
    try:
        for _ in range(rounds):
            for table in ("events", "events_plain"):
                sql = RAW_INSERT.format(table=table)
                digest = b"\x01" * 32

                async def insert(w: int, i: int, sql: str = sql, digest: bytes = digest) -> int:
                    next_stream[0] += 1
                    await pool.execute(sql, next_stream[0], DATA, META, datetime.now(UTC), digest)
                    return 1

                n, elapsed, _ = await run_for(seconds, writers, insert)
                results[table].append(n / elapsed)
    finally:
        await pool.close()
    return results


async def bench_readers(dsn: str, total: int, page: int, rounds: int) -> dict[str, list[float]]:
    conn = await asyncpg.connect(dsn)
    results: dict[str, list[float]] = {"safe": [], "naive": []}
    try:
        have = await conn.fetchval("SELECT count(*) FROM events")
        if have < total:
            await conn.execute(
                """
                INSERT INTO events (stream_id, version, type, schema, data, metadata,
                                    occurred_at, recorded_at, hash, prev_hash)
                SELECT 2 * 10^12 + g, 1, 'MessagePosted', 1, $1::json, $2::json,
                       now(), now(), '\\x01'::bytea, NULL
                FROM generate_series(1, $3) AS g
                """,
                DATA,
                META,
                total - have,
            )
        await conn.execute("ANALYZE events")
        # The xmin filter is server-wide: a long transaction in ANY database on the server
        # hides newer rows until it ends. Wait for the fill to become visible so both
        # readers page through the same rows.
        everything = await conn.fetchval("SELECT count(*) FROM events")
        while True:
            visible = await conn.fetchval(
                "SELECT count(*) FROM events "
                "WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
            )
            if visible >= everything:
                break
            await asyncio.sleep(0.05)
        for _ in range(rounds):
            start, n, after = time.perf_counter(), 0, (0, 0)
            while True:
                batch = await conn.fetch(READ_SAFE, after[0], after[1], page)
                if not batch:
                    break
                n += len(batch)
                after = (batch[-1]["transaction_id"], batch[-1]["position"])
            results["safe"].append(n / (time.perf_counter() - start))
            assert n >= everything, f"the safe reader saw {n} of {everything} rows"

            start, n, pos = time.perf_counter(), 0, 0
            while True:
                batch = await conn.fetch(READ_NAIVE, pos, page)
                if not batch:
                    break
                n += len(batch)
                pos = batch[-1]["position"]
            results["naive"].append(n / (time.perf_counter() - start))
    finally:
        await conn.close()
    return results


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--dsn",
        default="postgresql://postgres@127.0.0.1/postgres",
        help="server to use; a scratch database is created on it",
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    ap.add_argument("--writers", default="1,16,64", help="concurrent writer counts")
    ap.add_argument("--raw-writers", type=int, default=16, help="writers for the raw insert test")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds for the A/B tests")
    ap.add_argument("--read-rows", type=int, default=200_000, help="log size for the reader test")
    ap.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = ap.parse_args()
    writer_counts = [int(w) for w in args.writers.split(",")]

    name = f"ticketing_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(args.dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        version = await admin.fetchval("SHOW server_version")
    finally:
        await admin.close()
    dsn = with_database(args.dsn, name)
    try:
        await migrate(dsn)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(PLAIN_TABLE)
        finally:
            await conn.close()
        print(
            f"PostgreSQL {version}, {os.cpu_count()} CPUs, scratch database {name}, "
            f"{args.seconds:g} s per measurement\n"
        )

        rows = await bench_commands(dsn, args.seconds, writer_counts)
        print("1. Through CommandService, one event per command")
        print(table(["command", "writers", "events/s", "p99 ms", "events"], rows))

        raw = await bench_raw_insert(dsn, args.seconds, args.raw_writers, args.rounds)
        safe_w, plain_w = statistics.median(raw["events"]), statistics.median(raw["events_plain"])
        reads = await bench_readers(dsn, args.read_rows, 1000, args.rounds)
        safe_r, naive_r = statistics.median(reads["safe"]), statistics.median(reads["naive"])
        print(
            f"\n2. Cost of the gap-safe global order (median of {args.rounds} alternating rounds)"
        )
        print(
            table(
                ["measure", "with xid8 technique", "without", "cost"],
                [
                    [
                        f"raw 1-event INSERT tx/s, {args.raw_writers} writers",
                        f"{safe_w:,.0f}",
                        f"{plain_w:,.0f}",
                        f"{(1 - safe_w / plain_w) * 100:+.1f} %",
                    ],
                    [
                        f"reader rows/s, pages of 1000, {args.read_rows:,} rows",
                        f"{safe_r:,.0f}",
                        f"{naive_r:,.0f}",
                        f"{(1 - safe_r / naive_r) * 100:+.1f} %",
                    ],
                ],
            )
        )
        print("\n(cost = how much slower the gap-safe variant is; negative = faster, i.e. noise)")
    finally:
        if not args.keep:
            admin = await asyncpg.connect(args.dsn)
            try:
                await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            finally:
                await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
