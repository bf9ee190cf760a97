"""How fast the read models catch up on a backlog of replies (a worker back from a stall).

``python -m bench.catch_up [--tickets N] [--replies R] [--batches 64,500,5000] [--rounds K]``

Starts what ``ticketing bench`` starts for its database (a scratch database on
``TICKETING_DATABASE_URL``'s server, or an embedded one), seeds N tickets and builds the
read models. Then, for each batch size and round, it appends R public agent replies to
random tickets (no worker runs, so they wait as a backlog) and times
``projections.runner.catch_up`` over them at that batch size, printing events/s and the
CPU milliseconds per event spent by PostgreSQL (every backend, from /proc) and by this
process (the fold). Replies to existing tickets are the expensive case for the read
models: each rewrites a summary row and may add lexemes to the term index.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench.cpusplit import _cpu_by_group
from bench.run import tool_bench
from domain.events import Actor, MessagePosted
from projections import runner
from services.eventstore import EventStore, Metadata, NewEvent

AGENT = Actor(id="agent-bench", role="agent", name="Bench Agent")
BODY = "Have you tried turning the printer off and on again? Check the cable and the invoice."
POSTGRES = {"postgres": lambda pid, cmd: cmd.startswith("postgres:") or "/postgres " in cmd}


async def append_replies(pool: asyncpg.Pool, n: int, first_id: int, rnd: random.Random) -> int:
    """One public reply each to ``n`` distinct random tickets, one append per reply."""
    store = EventStore(pool)
    meta = Metadata(actor=AGENT, dialect="native")
    top = int(await pool.fetchval("SELECT max(stream_id) FROM streams"))
    wanted = rnd.sample(range(1, top + 1), min(n, top))
    heads = {
        r["stream_id"]: (r["version"], r["last_hash"])
        for r in await pool.fetch(
            "SELECT stream_id, version, last_hash FROM streams WHERE stream_id = ANY($1)", wanted
        )
    }
    now = datetime.now(UTC)

    async def reply(stream_id: int, message_id: int) -> None:
        version, last_hash = heads[stream_id]
        body = f"{BODY} ref{message_id % 997}"  # some lexemes the ticket lacks
        event = NewEvent(MessagePosted(message_id, AGENT, body), meta, now)
        await store.append(stream_id, version, last_hash, [event])

    ids = [sid for sid in wanted if sid in heads]
    for start in range(0, len(ids), 100):
        part = ids[start : start + 100]
        await asyncio.gather(*(reply(sid, first_id + start + k) for k, sid in enumerate(part)))
    return len(ids)


async def main_async(args: argparse.Namespace) -> None:
    bench = tool_bench("catch_up", Path(args.out), tickets=args.tickets)
    try:
        await bench.built()
        pool = await asyncpg.create_pool(bench.dsn, min_size=2, max_size=110)
        assert pool is not None
        try:
            rnd = random.Random(7)
            next_id = 10**12
            for _ in range(args.rounds):
                for size in (int(b) for b in args.batches.split(",")):
                    appended = await append_replies(pool, args.replies, next_id, rnd)
                    next_id += args.replies
                    pg0, py0 = _cpu_by_group(POSTGRES)["postgres"], time.process_time()
                    t0 = time.perf_counter()
                    applied = await runner.catch_up(pool, size)
                    secs = time.perf_counter() - t0
                    pg = _cpu_by_group(POSTGRES)["postgres"] - pg0
                    py = time.process_time() - py0
                    n = max(1, applied)
                    print(
                        f"batch {size:5d}: {applied:,} of {appended:,} replies in {secs:.2f} s"
                        f" = {applied / secs:,.0f} events/s; CPU ms/event: PostgreSQL"
                        f" {1e3 * pg / n:.3f}, fold {1e3 * py / n:.3f}",
                        flush=True,
                    )
        finally:
            await pool.close()
    finally:
        await bench.teardown()


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.catch_up", description=__doc__)
    p.add_argument("--tickets", type=int, default=300_000)
    p.add_argument("--replies", type=int, default=10_000)
    p.add_argument("--batches", default="64,500,5000", help="catch-up batch sizes")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default="/tmp/ticketing-catch-up")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
