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
from typing import Any

import asyncpg
import msgspec

from domain import ticket as domain
from domain.commands import (
    AssignTicket,
    ChangeStatus,
    CloseTicket,
    PostMessage,
    RaiseTicket,
    RateTicket,
)
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


async def _store(
    conn: asyncpg.Connection, streams: list[tuple[object, ...]], events: list[tuple[object, ...]]
) -> None:
    """One batch: the streams' heads and their events, in one transaction."""
    async with conn.transaction():
        await conn.copy_records_to_table(
            "streams", records=streams, columns=("stream_id", "version", "last_hash", "updated_at")
        )
        await conn.copy_records_to_table("events", records=events, columns=COLUMNS)


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
            await _store(conn, streams, events)
            done += n
            if progress:
                progress(done, count)
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE streams")
        return first, last
    finally:
        await conn.close()


REPLIES = (
    "Thanks for reporting this, we are looking into it",
    "Could you send a screenshot of the error message please",
    "It happens every time I open the export page on my laptop",
    "We found the cause and deployed a fix, please try again",
    "Works now, thank you for the quick help",
)


def _lifecycle_rows(
    ticket_id: int, first_message_id: int, rnd: random.Random, now: datetime, policy: Any
) -> tuple[list[tuple[object, ...]], tuple[object, ...], int]:
    """One ticket's whole life as a helpdesk sees it (raise, assign, a conversation with an
    internal note, in progress, resolved, closed, rated), decided and folded by the real
    domain: (event rows, its streams row, messages used)."""
    customer = f"customer-{rnd.randint(1, 5000)}"
    cust = Actor(id=customer, role="customer", name=f"Customer {customer[9:]}")
    agent = Actor(id=f"agent-{rnd.randint(1, 40)}", role="agent", name="Agent")
    w = rnd.sample(WORDS, 3)
    at = now - timedelta(seconds=rnd.randint(3600, 30 * 86400))
    commands: list[Any] = [
        RaiseTicket(
            actor=cust,
            now=at,
            ticket_id=ticket_id,
            subject=f"{w[0].capitalize()} {w[1]} problem",
            description=" ".join([w[2], *rnd.sample(FILLER, 6)]),
            category_id=rnd.randint(1, 5),
            sla_policy=policy,
            priority=rnd.choice(PRIORITIES),
        ),
        AssignTicket(actor=agent, now=at, assignee=agent.id),
    ]
    messages = 0
    for i in range(rnd.randint(2, 5)):
        who = agent if i % 2 == 0 else cust
        internal = who is agent and rnd.random() < 0.2
        commands.append(
            PostMessage(
                actor=who,
                now=at,
                message_id=first_message_id + messages,
                body=rnd.choice(REPLIES),
                visibility="internal" if internal else "public",
            )
        )
        messages += 1
    commands.append(ChangeStatus(actor=agent, now=at, status="in_progress"))
    if rnd.random() < 0.7:  # most tickets of a long-running desk are done
        commands.append(ChangeStatus(actor=agent, now=at, status="resolved"))
        commands.append(CloseTicket(actor=agent, now=at, resolution="fixed"))
        if rnd.random() < 0.5:
            commands.append(RateTicket(actor=cust, now=at, rating=rnd.randint(1, 5)))
    state: domain.Ticket | None = None
    rows: list[tuple[object, ...]] = []
    prev: bytes | None = None
    version = 0
    for n, cmd in enumerate(commands):
        cmd_at = at + timedelta(minutes=7 * n)
        cmd = msgspec.structs.replace(cmd, now=cmd_at)
        for event in domain.decide(state, cmd):
            version += 1
            meta = Metadata(
                actor=cmd.actor, request_id=f"seed-{ticket_id}-{version}", dialect="native"
            )
            data, md = _json.encode(event), _json.encode(meta)
            t, sv = event_type(event), schema_of(event)
            h = chain_hash(prev, ticket_id, version, t, sv, cmd_at, cmd_at, data, md)
            rows.append(
                (ticket_id, version, t, sv, data.decode(), md.decode(), cmd_at, cmd_at, h, prev)
            )
            prev = h
            state = domain.evolve(state, event, cmd_at)
    return rows, (ticket_id, version, prev, at), messages


async def seed_lifecycles(dsn: str, events: int, *, batch: int = 20_000, seed: int = 7) -> int:
    """Append whole ticket lifecycles (``_lifecycle_rows``) until at least ``events``
    events are stored; return how many were."""
    rnd = random.Random(seed)
    policy = {str(k): v for k, v in parse_targets(DEFAULT_SLA_TARGETS).items()}
    conn = await asyncpg.connect(dsn)
    try:
        now = datetime.now(UTC)
        done = 0
        while done < events:
            rows: list[tuple[object, ...]] = []
            streams: list[tuple[object, ...]] = []
            ticket_id = int(await conn.fetchval("SELECT nextval('ticket_id_seq')"))
            message_id = int(await conn.fetchval("SELECT nextval('message_id_seq')"))
            tickets = 0
            while len(rows) < batch and done + len(rows) < events:
                got, stream, used = _lifecycle_rows(
                    ticket_id + tickets, message_id, rnd, now, policy
                )
                rows += got
                streams.append(stream)
                tickets += 1
                message_id += used
            await conn.execute("SELECT setval('ticket_id_seq', $1)", ticket_id + tickets)
            await conn.execute("SELECT setval('message_id_seq', $1)", message_id + 1)
            await _store(conn, streams, rows)
            done += len(rows)
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE streams")
        return done
    finally:
        await conn.close()


if __name__ == "__main__":  # a quick manual check: python -m bench.seed DSN N
    import asyncio
    import sys

    t0 = time.perf_counter()
    print(asyncio.run(seed_tickets(sys.argv[1], int(sys.argv[2]))), time.perf_counter() - t0)
