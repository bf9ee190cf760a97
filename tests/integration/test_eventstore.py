"""The PostgreSQL event store on a real server: concurrency, global order, immutability, hashes.

Every test here uses ``fresh_pool`` (a database of its own) so counts and orders are
exact. No test asserts on time; where an ordering must be forced, the test drives it
step by step.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import msgspec
import pytest

from domain.events import Actor, Event, MessagePosted, TicketRaised
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets
from domain.ticket import fold
from services.commands import CommandService, Context
from services.db import migrate
from services.eventstore import (
    APPEND_NEW,
    ConcurrencyConflict,
    EventStore,
    Metadata,
    NewEvent,
    RecordedEvent,
    chain_hash,
    verify_chain,
)

CUSTOMER = Actor(id="cust-1", role="customer", name="Cara")
AGENT = Actor(id="agent-1", role="agent", name="Ada")
TARGETS = parse_targets(DEFAULT_SLA_TARGETS)


def raised(ticket_id: int) -> TicketRaised:
    return TicketRaised(
        ticket_id=ticket_id,
        subject=f"ticket {ticket_id}",
        description="broken",
        category_id=1,
        priority="medium",
        requester=CUSTOMER,
        sla=TARGETS["medium"],
    )


def posted(message_id: int, body: str = "hi") -> MessagePosted:
    return MessagePosted(message_id=message_id, author=AGENT, body=body)


def new(event: Event, actor: Actor = AGENT) -> NewEvent:
    return NewEvent(event=event, metadata=Metadata(actor=actor), occurred_at=datetime.now(UTC))


async def start_stream(store: EventStore, stream_id: int) -> RecordedEvent:
    (first,) = await store.append(stream_id, 0, None, [new(raised(stream_id), CUSTOMER)])
    return first


async def append_until_it_lands(store: EventStore, stream_id: int, event: Event) -> int:
    """Append at the stream's current version, retrying on conflict; the version won."""
    while True:
        events = await store.read_stream(stream_id)
        try:
            (rec,) = await store.append(stream_id, len(events), events[-1].hash, [new(event)])
        except ConcurrencyConflict:
            continue
        return rec.version


async def read_all_settled(
    store: EventStore, expected: int, after: tuple[int, int] = (0, 0), limit: int = 1000
) -> list[RecordedEvent]:
    """read_all once every older transaction on the server has finished.

    The commit-safe reader hides rows until no older transaction is running anywhere on
    the server (other databases and other test sessions included), so a read straight
    after a commit may legitimately come back short; poll until ``expected`` rows show.
    """
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 60  # a guard against hanging, not an assertion on time
    while True:
        got = await store.read_all(after=after, limit=limit)
        if len(got) >= expected or loop.time() > give_up:
            return got
        await asyncio.sleep(0.01)


# --- optimistic concurrency -----------------------------------------------------------


async def test_64_concurrent_appends_at_one_expected_version_have_exactly_one_winner(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    first = await start_stream(store, 1)

    async def attempt(i: int) -> list[RecordedEvent] | None:
        try:
            return await store.append(1, 1, first.hash, [new(posted(i))])
        except ConcurrencyConflict:
            return None

    outcomes = await asyncio.gather(*(attempt(i) for i in range(64)))
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1, f"{len(winners)} writers won version 2"
    stream = await store.read_stream(1)
    assert [e.version for e in stream] == [1, 2]
    assert stream[1].event == winners[0][0].event
    assert verify_chain(stream) is None
    # the losers' positions were never taken: the global log holds exactly two events
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") == 2


async def test_64_concurrent_writers_retrying_on_conflict_leave_a_gap_free_stream(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    await start_stream(store, 7)
    won = await asyncio.gather(
        *(append_until_it_lands(store, 7, posted(i, f"writer {i}")) for i in range(64))
    )
    # exactly one winner per version: 64 distinct versions, 2..65
    assert sorted(won) == list(range(2, 66))
    stream = await store.read_stream(7)
    assert [e.version for e in stream] == list(range(1, 66))
    bodies = sorted(e.event.body for e in stream[1:] if isinstance(e.event, MessagePosted))
    assert bodies == sorted(f"writer {i}" for i in range(64))
    assert verify_chain(stream) is None
    streams_row = await fresh_pool.fetchrow(
        "SELECT version, last_hash FROM streams WHERE stream_id = 7"
    )
    assert streams_row["version"] == 65 and bytes(streams_row["last_hash"]) == stream[-1].hash


async def test_64_concurrent_commands_through_the_service_all_succeed_gap_free(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    raised_ = await service.raise_ticket(
        Context(actor=CUSTOMER), subject="Busy", description="many writers", category_id=1
    )
    tid = raised_.ticket.id
    results = await asyncio.gather(
        *(service.post_message(Context(actor=AGENT), tid, body=f"reply {i}") for i in range(64))
    )
    assert all(len(r.events) == 1 for r in results)
    assert sorted(r.version for r in results) == list(range(2, 66))
    state, events = await service.load(tid)
    assert state is not None and state.version == 65
    assert [e.version for e in events] == list(range(1, 66))
    assert len({m.id for m in state.messages}) == 64
    assert verify_chain(events) is None


async def test_a_new_stream_can_be_started_only_once(fresh_pool: asyncpg.Pool) -> None:
    store = EventStore(fresh_pool)
    outcomes = await asyncio.gather(
        *(store.append(3, 0, None, [new(raised(3))]) for _ in range(16)), return_exceptions=True
    )
    assert sum(1 for o in outcomes if isinstance(o, list)) == 1
    assert all(isinstance(o, ConcurrencyConflict) for o in outcomes if not isinstance(o, list))
    assert [e.version for e in await store.read_stream(3)] == [1]


async def test_a_stale_expected_version_appends_nothing(fresh_pool: asyncpg.Pool) -> None:
    store = EventStore(fresh_pool)
    first = await start_stream(store, 5)
    await store.append(5, 1, first.hash, [new(posted(1))])
    with pytest.raises(ConcurrencyConflict):
        await store.append(5, 1, first.hash, [new(posted(2))])
    with pytest.raises(ConcurrencyConflict):  # ahead of the stream is as wrong as behind
        await store.append(5, 7, first.hash, [new(posted(3))])
    assert [e.version for e in await store.read_stream(5)] == [1, 2]


# --- commit-safe global order ---------------------------------------------------------


async def _follow(
    store: EventStore, seen: list[RecordedEvent], done: asyncio.Event, expected: int
) -> None:
    """Follow the log from the start with a checkpoint until ``expected`` events are read."""
    checkpoint = (0, 0)
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 120  # a guard against hanging, not an assertion on time
    while len(seen) < expected:
        batch = await store.read_all(after=checkpoint, limit=50)
        seen.extend(batch)
        if batch:
            checkpoint = batch[-1].checkpoint
        elif done.is_set() and loop.time() > give_up:
            break
        else:
            await asyncio.sleep(0.005)


async def test_a_reader_sees_every_event_once_in_commit_order_despite_a_late_commit(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    writers, per_writer = 12, 15
    # The slow transaction takes its position FIRST and commits LAST.
    slow = await fresh_pool.acquire()
    slow_tx = slow.transaction()
    await slow_tx.start()
    ev = raised(999)
    data = msgspec.json.encode(ev).decode()
    meta = msgspec.json.encode(Metadata(actor=CUSTOMER)).decode()
    now = datetime.now(UTC)
    slow_hash = chain_hash(None, 999, 1, "TicketRaised", 2, now, now, data.encode(), meta.encode())
    (slow_row,) = await slow.fetch(
        APPEND_NEW,
        999,
        0,
        1,
        slow_hash,
        now,
        [1],
        ["TicketRaised"],
        [2],
        [data],
        [meta],
        [now],
        [slow_hash],
        [None],
        None,
        None,
        None,
        None,
    )
    slow_position = slow_row["position"]

    seen: list[RecordedEvent] = []
    done = asyncio.Event()
    expected = 1 + writers * per_writer
    follower = asyncio.create_task(_follow(store, seen, done, expected))

    async def writer(w: int) -> None:
        sid = 1000 + w
        await start_stream(store, sid)
        for i in range(per_writer - 1):
            await append_until_it_lands(store, sid, posted(w * 100 + i))

    await asyncio.gather(*(writer(w) for w in range(writers)))
    # Every other writer has committed, all with higher positions than the slow one.
    later = await fresh_pool.fetchval(
        "SELECT count(*) FROM events WHERE position > $1", slow_position
    )
    assert later == writers * per_writer, "the scenario needs later positions committed first"
    # A naive `position > checkpoint` reader would move its checkpoint past the slow
    # position now and never come back for it ...
    naive = [r["position"] for r in await fresh_pool.fetch("SELECT position FROM events")]
    assert slow_position not in naive and max(naive) > slow_position
    # ... while the commit-safe reader returns nothing at or after the open transaction.
    visible_now = await store.read_all(after=(0, 0), limit=10_000)
    assert all(e.position < slow_position for e in visible_now)
    assert not any(e.stream_id == 999 for e in seen)
    await slow_tx.commit()
    await fresh_pool.release(slow)
    done.set()
    await follower

    positions = [e.position for e in seen]
    assert len(positions) == len(set(positions)) == expected, "an event was missed or repeated"
    total = await fresh_pool.fetchval("SELECT count(*) FROM events")
    assert sorted(positions) == [
        r["position"] for r in await fresh_pool.fetch("SELECT position FROM events ORDER BY 1")
    ]
    assert total == expected
    checkpoints = [e.checkpoint for e in seen]
    assert checkpoints == sorted(checkpoints), "not in (transaction_id, position) order"
    assert any(e.stream_id == 999 and e.position == slow_position for e in seen)
    # per stream, versions arrive in order
    for sid in {e.stream_id for e in seen}:
        versions = [e.version for e in seen if e.stream_id == sid]
        assert versions == list(range(1, len(versions) + 1))


async def test_many_concurrent_appenders_and_a_follower_agree_on_every_event(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    streams, per_stream = 32, 6
    seen: list[RecordedEvent] = []
    done = asyncio.Event()
    follower = asyncio.create_task(_follow(store, seen, done, streams * per_stream))

    async def writer(sid: int) -> None:
        await start_stream(store, sid)
        for i in range(per_stream - 1):
            await append_until_it_lands(store, sid, posted(sid * 100 + i))

    await asyncio.gather(*(writer(s) for s in range(1, streams + 1)))
    done.set()
    await follower
    keys = [(e.stream_id, e.version) for e in seen]
    assert len(keys) == len(set(keys)) == streams * per_stream
    assert [e.checkpoint for e in seen] == sorted(e.checkpoint for e in seen)
    # a second reader from any checkpoint continues exactly where the first left off
    middle = seen[len(seen) // 2]
    rest = await read_all_settled(store, len(seen) - len(seen) // 2 - 1, after=middle.checkpoint)
    assert [e.position for e in rest] == [e.position for e in seen[len(seen) // 2 + 1 :]]


async def test_head_and_position_checkpoints(fresh_pool: asyncpg.Pool) -> None:
    store = EventStore(fresh_pool)
    assert await store.head() == (0, 0)
    assert await store.read_all() == []
    first = await start_stream(store, 1)
    second = await start_stream(store, 2)
    assert await store.head() == second.checkpoint
    assert await store.checkpoint_of_position(first.position) == first.checkpoint
    assert await store.checkpoint_of_position(10**12) is None
    after_first = await read_all_settled(store, 1, after=first.checkpoint)
    assert [e.position for e in after_first] == [second.position]
    assert [e.position for e in await read_all_settled(store, 1, limit=1)] == [first.position]


# --- immutability and hashes ----------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'Forged'",
        "UPDATE events SET data = '{}'::json WHERE version = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE version = 1",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ],
)
async def test_the_database_refuses_to_change_history(
    fresh_pool: asyncpg.Pool, statement: str
) -> None:
    store = EventStore(fresh_pool)
    await start_stream(store, 1)
    before = await store.read_stream(1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="events are immutable"):
        await fresh_pool.execute(statement)
    assert await store.read_stream(1) == before


async def _tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """What a superuser with psql could do: switch the guard off, edit, switch it on."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def _three_event_stream(pool: asyncpg.Pool) -> EventStore:
    store = EventStore(pool)
    first = await start_stream(store, 1)
    (second,) = await store.append(1, 1, first.hash, [new(posted(1, "original"))])
    await store.append(1, 2, second.hash, [new(posted(2, "later"))])
    assert verify_chain(await store.read_stream(1)) is None
    return store


async def test_a_tampered_payload_is_detected_by_the_hash_chain(fresh_pool: asyncpg.Pool) -> None:
    store = await _three_event_stream(fresh_pool)
    await _tamper(
        fresh_pool,
        "UPDATE events SET data = replace(data::text, 'original', 'forged')::json "
        "WHERE stream_id = 1 AND version = 2",
    )
    events = await store.read_stream(1)
    assert isinstance(events[1].event, MessagePosted) and events[1].event.body == "forged"
    problem = verify_chain(events)
    assert problem is not None and "version 2" in problem and "hash" in problem


async def test_a_tampered_actor_in_metadata_is_detected(fresh_pool: asyncpg.Pool) -> None:
    store = await _three_event_stream(fresh_pool)
    await _tamper(
        fresh_pool,
        "UPDATE events SET metadata = replace(metadata::text, 'agent-1', 'agent-9')::json "
        "WHERE stream_id = 1 AND version = 3",
    )
    problem = verify_chain(await store.read_stream(1))
    assert problem is not None and "version 3" in problem


async def test_a_rehashed_row_still_breaks_the_chain_of_its_successor(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = await _three_event_stream(fresh_pool)
    await _tamper(
        fresh_pool,
        "UPDATE events SET hash = sha256(hash) WHERE stream_id = 1 AND version = 2",
    )
    problem = verify_chain(await store.read_stream(1))
    assert problem is not None and "version 2" in problem


async def test_a_deleted_row_is_detected(fresh_pool: asyncpg.Pool) -> None:
    store = await _three_event_stream(fresh_pool)
    await _tamper(fresh_pool, "DELETE FROM events WHERE stream_id = 1 AND version = 2")
    problem = verify_chain(await store.read_stream(1))
    assert problem is not None and "version 3" in problem


# --- upcasting ------------------------------------------------------------------------


V1_TICKET_RAISED = {
    "ticket_id": 501,
    "subject": "Old printer",
    "description": "raised by the v1 service",
    "category_id": 2,
    "priority": "high",
    "requester_id": 77,
    "requester_name": "Vera Legacy",
}


async def _store_v1_ticket(pool: asyncpg.Pool) -> None:
    data = msgspec.json.encode(V1_TICKET_RAISED).decode()
    meta = msgspec.json.encode({"actor": {"id": "77", "role": "customer"}}).decode()
    at = datetime(2023, 5, 1, 12, 0, tzinfo=UTC)
    digest = chain_hash(None, 501, 1, "TicketRaised", 1, at, at, data.encode(), meta.encode())
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO streams (stream_id, version, last_hash, updated_at) "
            "VALUES (501, 1, $1, $2)",
            digest,
            at,
        )
        await conn.execute(
            "INSERT INTO events (stream_id, version, type, schema, data, metadata, occurred_at,"
            " recorded_at, hash, prev_hash) VALUES (501, 1, 'TicketRaised', 1, $1::json,"
            " $2::json, $3, $3, $4, NULL)",
            data,
            meta,
            at,
            digest,
        )


async def test_a_stored_v1_ticket_raised_is_upcast_on_read_and_folds(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    await _store_v1_ticket(fresh_pool)
    store = EventStore(fresh_pool)
    (rec,) = await store.read_stream(501)
    assert rec.schema == 1  # history is never rewritten ...
    assert "requester_id" in rec.data_raw
    event = rec.event  # ... but readers get the current shape
    assert isinstance(event, TicketRaised)
    assert event.requester == Actor(id="77", role="customer", name="Vera Legacy")
    assert event.sla == TARGETS["high"]
    assert event.attachments == []
    assert verify_chain([rec]) is None
    ticket = fold([(event, rec.occurred_at)])
    assert ticket is not None
    assert (ticket.id, ticket.subject, ticket.priority, ticket.status) == (
        501,
        "Old printer",
        "high",
        "open",
    )
    # the global feed upcasts too, and the ticket takes new commands on top of v1 history
    (fed,) = await read_all_settled(store, 1)
    assert fed.event == event
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    result = await service.post_message(Context(actor=AGENT), 501, body="still on it?")
    assert result.version == 2
    assert result.ticket.requester.name == "Vera Legacy"
    assert verify_chain((await service.load(501))[1]) is None


# --- migrations -----------------------------------------------------------------------


async def test_migrate_twice_on_an_empty_database_is_idempotent(servers: object) -> None:
    name = await servers.create_database()  # type: ignore[attr-defined]
    dsn = servers.dsn(name)  # type: ignore[attr-defined]
    first = await migrate(dsn)
    assert first and first[0].startswith("0001_")
    assert await migrate(dsn) == []
    # and two migrators racing each other are serialised by the advisory lock
    name2 = await servers.create_database()  # type: ignore[attr-defined]
    dsn2 = servers.dsn(name2)  # type: ignore[attr-defined]
    a, b = await asyncio.gather(migrate(dsn2), migrate(dsn2))
    assert sorted([a, b], key=len) == [[], first]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM categories") >= 1
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE events")
    finally:
        await conn.close()


async def test_migrate_on_an_already_migrated_database_applies_nothing(fresh_dsn: str) -> None:
    assert await migrate(fresh_dsn) == []
    assert await migrate(fresh_dsn) == []


async def test_a_read_for_a_decision_holds_the_facts_the_head_hash_and_a_fresh_id(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    first = await start_stream(store, 41)
    (second,) = await store.append(41, 1, first.hash, [new(posted(1, "more"))])
    full = await store.read_stream(41)

    plain = await store.read_for_decision(41)
    assert plain.facts == [(e.event, e.occurred_at) for e in full]
    assert plain.last_hash == second.hash
    assert plain.next_id is None

    a = await store.read_for_decision(41, "message_id_seq")
    b = await store.read_for_decision(41, "message_id_seq")
    assert a.facts == plain.facts and a.last_hash == plain.last_hash
    assert a.next_id is not None and b.next_id == a.next_id + 1

    empty = await store.read_for_decision(999, "message_id_seq")
    assert empty.facts == [] and empty.last_hash is None and empty.next_id == b.next_id + 1
    with pytest.raises(ValueError):
        await store.read_for_decision(41, "events; DROP TABLE events")
