"""``audit verify`` time for N events.

Synthetic but valid history (a TicketRaised and then MessagePosted events, ten events a
ticket by default) is hash-chained with ``services.eventstore.chain_hash`` and COPYed
into the event store; the live read models are built with ``rebuild_all``; then
``services.audit.verify`` is timed: every hash chain recomputed, versions checked,
every projection replayed into a scratch schema and compared row by row.

    .venv/bin/python -m bench.audit_verify [--events 1000000] [--quick] \
        --dsn postgresql://postgres@127.0.0.1/postgres

``--dsn`` is an admin DSN: a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from domain.events import Actor, Event, MessagePosted, SlaTargets, TicketRaised
from projections.rebuild import rebuild_all
from services.audit import verify
from services.db import migrate
from services.embedded import with_database
from services.eventstore import Metadata, chain_hash

CUSTOMER = Actor(id="bench-cust", role="customer", name="Bench Customer")
AGENT = Actor(id="bench-agent", role="agent", name="Bench Agent")
COLUMNS = (
    "stream_id",
    "version",
    "type",
    "schema",
    "data",
    "metadata",
    "occurred_at",
    "recorded_at",
    "hash",
    "prev_hash",
)
_json = msgspec.json.Encoder()


def history(
    tickets: int, per_ticket: int, start: datetime
) -> Iterator[tuple[tuple[object, ...], tuple[int, int, bytes] | None]]:
    """(event row, stream head when the stream is complete) for every event."""
    message_id = 0
    seq = 0
    for tid in range(1, tickets + 1):
        prev: bytes | None = None
        for version in range(1, per_ticket + 1):
            seq += 1
            at = start + timedelta(milliseconds=seq)
            event: Event
            if version == 1:
                event = TicketRaised(
                    ticket_id=tid,
                    subject=f"Bench ticket {tid}",
                    description="Synthetic history for the audit benchmark",
                    category_id=1 + tid % 5,
                    priority="medium",
                    requester=CUSTOMER,
                    sla=SlaTargets(12 * 3600, 72 * 3600),
                )
                actor = CUSTOMER
            else:
                message_id += 1
                actor = AGENT if version % 2 == 0 else CUSTOMER
                event = MessagePosted(
                    message_id=message_id,
                    author=actor,
                    body=f"Message {version} on ticket {tid}",
                    visibility="internal" if version % 5 == 0 else "public",
                )
            meta = Metadata(actor=actor, request_id=f"req-{seq}", dialect="native")
            data, mdata = _json.encode(event), _json.encode(meta)
            type_ = type(event).__name__
            schema = type(event).SCHEMA
            h = chain_hash(prev, tid, version, type_, schema, at, at, data, mdata)
            row = (tid, version, type_, schema, data.decode(), mdata.decode(), at, at, h, prev)
            prev = h
            yield row, ((tid, version, h) if version == per_ticket else None)


async def load(dsn: str, events: int, per_ticket: int) -> tuple[int, int]:
    tickets = max(1, events // per_ticket)
    conn = await asyncpg.connect(dsn)
    start = datetime.now(UTC) - timedelta(days=30)
    rows: list[tuple[object, ...]] = []
    heads: list[tuple[object, ...]] = []
    total = 0
    try:
        for row, head in history(tickets, per_ticket, start):
            rows.append(row)
            if head is not None:
                heads.append((head[0], head[1], head[2], start))
            if len(rows) >= 100_000:
                await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
                total += len(rows)
                rows = []
        if rows:
            await conn.copy_records_to_table("events", records=rows, columns=COLUMNS)
            total += len(rows)
        await conn.copy_records_to_table(
            "streams", records=heads, columns=("stream_id", "version", "last_hash", "updated_at")
        )
        await conn.execute("SELECT setval('ticket_id_seq', $1)", tickets)
        await conn.execute(
            "SELECT setval('message_id_seq', $1)", max(1, tickets * (per_ticket - 1))
        )
        await conn.execute("VACUUM ANALYZE events")
    finally:
        await conn.close()
    return total, tickets


async def run(admin_dsn: str, events: int, per_ticket: int) -> dict[str, object]:
    name = f"bench_audit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f"CREATE DATABASE {name}")
    dsn = with_database(admin_dsn, name)
    try:
        await migrate(dsn)
        t = time.perf_counter()
        total, tickets = await load(dsn, events, per_ticket)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        await rebuild_all(dsn)
        build_s = time.perf_counter() - t
        t = time.perf_counter()
        report = await verify(dsn)
        verify_s = time.perf_counter() - t
        return {
            "events": total,
            "tickets": tickets,
            "ok": report.ok,
            "problems": [p.message for p in report.problems[:5]],
            "verify_seconds": round(verify_s, 1),
            "events_per_second": round(total / verify_s),
            "hash_chain_seconds": round(report.chain_seconds, 1),
            "replay_and_compare_seconds": round(report.projection_seconds, 1),
            "rows_compared": report.tables,
            "setup_load_seconds": round(load_s, 1),
            "setup_live_projections_seconds": round(build_s, 1),
        }
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1/postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--per-ticket", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20,000 events")
    args = parser.parse_args()
    events = 20_000 if args.quick else args.events
    result = asyncio.run(run(args.dsn, events, args.per_ticket))
    print(json.dumps(result, indent=2))
    print(
        f"\naudit verify: {result['verify_seconds']} s for {result['events']:,} events "
        f"({result['hash_chain_seconds']} s hash chains, "
        f"{result['replay_and_compare_seconds']} s replay + compare); ok={result['ok']}"
    )


if __name__ == "__main__":
    main()
