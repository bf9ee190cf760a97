"""Bulk-load a realistic event log for the benchmarks, fast.

Tickets are decided by the real domain (``domain.ticket.decide``) and stored with the
same encoding and hash chain as ``EventStore.append``, but written with COPY in large
transactions, so a million events take seconds instead of the hours the API would. Subjects
and descriptions draw on a fixed vocabulary, so keyword searches hit a known share of
tickets. One ticket in ``overdue_every`` was raised days ago, so its SLA targets have
passed and an SLA sweep has real work.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from domain import ticket as domain
from domain.commands import RaiseTicket
from domain.events import PRIORITIES, Actor, SlaTargets, event_type, schema_of
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets
from services.eventstore import Metadata, _json, chain_hash

# Search words: each appears in about 1/len(WORDS) of the subjects.
WORDS = tuple(
    "printer invoice refund password login outage billing upgrade mobile android iphone "
    "export import report dashboard email notification calendar payment card shipping "
    "delivery warranty contract license install crash timeout slow error sync backup "
    "restore account profile avatar language timezone integration webhook token browser "
    "firefox safari chrome windows linux macos tablet keyboard screen battery network".split()
)
FILLER = "please help the customer says that it does not work since yesterday".split()

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


def _ticket_rows(
    ticket_id: int,
    rnd: random.Random,
    now: datetime,
    policy: dict[str, SlaTargets],
    overdue: bool,
    text: tuple[str, str] | None = None,
    spread_seconds: int = 3000,
) -> tuple[tuple[object, ...], tuple[object, ...]]:
    customer = f"customer-{rnd.randint(1, 5000)}"
    actor = Actor(id=customer, role="customer", name=f"Customer {customer[9:]}")
    w = rnd.sample(WORDS, 3)
    at = (
        now - timedelta(days=3)
        if overdue
        else now - timedelta(seconds=rnd.randint(0, spread_seconds))
    )
    subject, description = text or (
        f"{w[0].capitalize()} {w[1]} problem",
        " ".join([w[2], *rnd.sample(FILLER, 6)]),
    )
    cmd = RaiseTicket(
        actor=actor,
        now=at,
        ticket_id=ticket_id,
        subject=subject,
        description=description,
        category_id=rnd.randint(1, 5),
        sla_policy=policy,
        priority=rnd.choice(PRIORITIES),
    )
    (event,) = domain.decide(None, cmd)
    meta = Metadata(actor=actor, request_id=f"seed-{ticket_id}", dialect="native")
    data, md = _json.encode(event), _json.encode(meta)
    t, s = event_type(event), schema_of(event)
    h = chain_hash(None, ticket_id, 1, t, s, at, at, data, md)
    return (ticket_id, 1, t, s, data.decode(), md.decode(), at, at, h, None), (
        ticket_id,
        1,
        h,
        at,
    )


async def seed_tickets(
    dsn: str,
    count: int,
    *,
    batch: int = 50_000,
    overdue_every: int = 1000,
    seed: int = 42,
    progress: Callable[[int, int], None] | None = None,
    text: tuple[str, str] | None = None,
    spread_seconds: int = 3000,
) -> tuple[int, int]:
    """Append ``count`` TicketRaised streams; return (first_id, last_id).

    Each is raised up to ``spread_seconds`` before now; ``text`` gives every ticket the
    same (subject, description) instead of drawing them from ``WORDS`` (the bench's
    raise phase adds such identical tickets).
    """
    rnd = random.Random(seed)
    policy = {str(k): v for k, v in parse_targets(DEFAULT_SLA_TARGETS).items()}
    conn = await asyncpg.connect(dsn)
    try:
        first = int(await conn.fetchval("SELECT nextval('ticket_id_seq')"))
        last = first + count - 1
        await conn.execute("SELECT setval('ticket_id_seq', $1)", last)
        now = datetime.now(UTC)
        done = 0
        while done < count:
            n = min(batch, count - done)
            events, streams = [], []
            for i in range(n):
                tid = first + done + i
                overdue = overdue_every > 0 and tid % overdue_every == 0
                e, s = _ticket_rows(tid, rnd, now, policy, overdue, text, spread_seconds)
                events.append(e)
                streams.append(s)
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "streams",
                    records=streams,
                    columns=("stream_id", "version", "last_hash", "updated_at"),
                )
                await conn.copy_records_to_table("events", records=events, columns=COLUMNS)
            done += n
            if progress:
                progress(done, count)
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE streams")
        return first, last
    finally:
        await conn.close()


if __name__ == "__main__":  # a quick manual check: python -m bench.seed DSN N
    import asyncio
    import sys

    t0 = time.perf_counter()
    print(asyncio.run(seed_tickets(sys.argv[1], int(sys.argv[2]))), time.perf_counter() - t0)
