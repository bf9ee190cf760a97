"""Grouped statements on a real server: group append (services/groupappend.py,
EventStore.append_many) and group read (services/groupread.py).

Each grouped append must behave as if written alone: it applies only at its expected
version, a conflict fails that append alone and writes nothing of it, chains and
versions stay gap-free, and a caller gone before its append is taken appends nothing.
"""

from __future__ import annotations

import asyncio

import asyncpg
from test_eventstore import AGENT, CUSTOMER, new, posted, raised, start_stream

from domain.events import MessagePosted
from services.commands import CommandService, Context
from services.eventstore import ConcurrencyConflict, EventStore, verify_chain
from services.groupappend import GroupAppender


async def test_append_many_applies_each_append_on_its_own_expected_version(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    one = await start_stream(store, 1)
    two = await start_stream(store, 2)
    await start_stream(store, 3)  # a new stream 3 below conflicts with this one
    batch = [
        store.prepare(1, 1, one.hash, [new(posted(10)), new(posted(11))]),  # applies
        store.prepare(2, 5, two.hash, [new(posted(20))]),  # stale: stream 2 is at 1
        store.prepare(3, 0, None, [new(raised(3), CUSTOMER)]),  # stream 3 exists
        store.prepare(4, 0, None, [new(raised(4), CUSTOMER)]),  # a new stream: applies
    ]
    results = await store.append_many(batch)
    assert results[1] is None and results[2] is None
    assert results[0] is not None and results[3] is not None
    assert [e.version for e in results[0]] == [2, 3]
    assert [e.version for e in results[3]] == [1]
    # the statement is one transaction: every event of it shares its transaction id
    xids = {e.transaction_id for r in (results[0], results[3]) for e in r}
    assert len(xids) == 1
    for stream_id, versions in ((1, [1, 2, 3]), (2, [1]), (3, [1]), (4, [1])):
        stream = await store.read_stream(stream_id)
        assert [e.version for e in stream] == versions
        assert verify_chain(stream) is None
    # what the call returned is what was stored
    stored = await store.read_stream(1)
    assert [(e.position, e.hash) for e in stored[1:]] == [(e.position, e.hash) for e in results[0]]
    assert await fresh_pool.fetchval("SELECT version FROM streams WHERE stream_id = 1") == 3
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") == 6


async def test_concurrent_commands_share_statements_and_all_land(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    assert service.appender is not None
    results = await asyncio.gather(
        *(
            service.raise_ticket(
                Context(actor=CUSTOMER), subject=f"s{i}", description="d", category_id=1
            )
            for i in range(40)
        )
    )
    ids = {r.ticket.id for r in results}
    assert len(ids) == 40
    # grouped: fewer statements than appends (40 callers queued behind the first)
    assert service.appender.requests == 40
    assert service.appender.groups < 40
    for r in results:
        state, events = await service.load(r.ticket.id)
        assert state is not None and state.subject == r.ticket.subject
        assert [e.position for e in events] == [r.events[0].position]
        assert verify_chain(events) is None


async def test_hot_ticket_writers_through_groups_stay_gap_free(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    """Two appends to one stream never share a statement; conflicts retry to success."""
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    raised_ = await service.raise_ticket(
        Context(actor=CUSTOMER), subject="Busy", description="hot", category_id=1
    )
    tid = raised_.ticket.id
    others = [
        service.raise_ticket(Context(actor=CUSTOMER), subject="x", description="y", category_id=1)
        for _ in range(16)
    ]
    replies = [
        service.post_message(Context(actor=AGENT), tid, body=f"reply {i}") for i in range(32)
    ]
    results = await asyncio.gather(*replies, *others)
    assert sorted(r.version for r in results[:32]) == list(range(2, 34))
    state, events = await service.load(tid)
    assert state is not None
    assert [e.version for e in events] == list(range(1, 34))
    bodies = sorted(e.event.body for e in events if isinstance(e.event, MessagePosted))
    assert bodies == sorted(f"reply {i}" for i in range(32))
    assert verify_chain(events) is None


async def test_a_group_that_fails_as_a_whole_is_retried_one_by_one(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    # an event row without its stream row: starting stream 9 inserts the stream row but
    # its event collides with that row, so a statement holding it fails as a whole
    await store.append(9, 0, None, [new(raised(9), CUSTOMER)])
    await fresh_pool.execute("DELETE FROM streams WHERE stream_id = 9")
    appender = GroupAppender(store)
    outcomes = await asyncio.gather(
        *(
            appender.append(store.prepare(sid, 0, None, [new(raised(sid), CUSTOMER)]))
            for sid in (8, 9, 10)
        ),
        return_exceptions=True,
    )
    assert appender.groups == 1  # the three were one group
    assert isinstance(outcomes[1], ConcurrencyConflict)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert [e.stream_id for e in outcomes[0]] == [8]
    assert [e.stream_id for e in outcomes[2]] == [10]
    assert await fresh_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 9") == 1
    assert await fresh_pool.fetchval("SELECT count(*) FROM streams WHERE stream_id = 9") == 0


async def test_a_caller_gone_before_its_append_is_taken_appends_nothing(
    fresh_pool: asyncpg.Pool,
) -> None:
    store = EventStore(fresh_pool)
    appender = GroupAppender(store)
    kept = asyncio.ensure_future(
        appender.append(store.prepare(1, 0, None, [new(raised(1), CUSTOMER)]))
    )
    gone = asyncio.ensure_future(
        appender.append(store.prepare(2, 0, None, [new(raised(2), CUSTOMER)]))
    )
    await asyncio.sleep(0)  # both queued; the writer has not taken them yet
    gone.cancel()
    assert [e.stream_id for e in await kept] == [1]
    assert gone.cancelled()
    assert await fresh_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 2") == 0
    assert appender.requests == 1


async def test_grouped_reads_return_each_stream_and_share_statements(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    assert service.reader is not None
    tickets = [
        (
            await service.raise_ticket(
                Context(actor=CUSTOMER), subject=f"t{i}", description="d", category_id=1
            )
        ).ticket.id
        for i in range(24)
    ]
    replies = await asyncio.gather(
        *(service.post_message(Context(actor=AGENT), t, body=f"to {t}") for t in tickets)
    )
    assert service.reader.requests == 24
    assert service.reader.groups < 24
    assert [r.version for r in replies] == [2] * 24
    message_ids = [r.ticket.messages[-1].id for r in replies]
    assert len(set(message_ids)) == 24
    for t, r in zip(tickets, replies, strict=True):
        assert r.ticket.id == t and r.ticket.messages[-1].body == f"to {t}"
    # a read sees what was acknowledged before it: each stream's head is the reply
    found = await service.store.read_many_for_decision([*tickets, 999_999])
    assert found[999_999].facts == [] and found[999_999].last_hash is None
    for t, r in zip(tickets, replies, strict=True):
        assert len(found[t].facts) == 2
        assert found[t].last_hash == r.events[-1].hash


async def test_concurrent_ticket_reads_share_statements(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    service = CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]
    assert service.reader is not None
    raised_ = [
        await service.raise_ticket(
            Context(actor=CUSTOMER), subject=f"read {i}", description="d", category_id=1
        )
        for i in range(16)
    ]
    before = service.reader.groups
    shown = await asyncio.gather(*(service.load_ticket(r.ticket.id) for r in raised_))
    assert service.reader.groups - before < 16
    assert [t.subject if t else None for t in shown] == [f"read {i}" for i in range(16)]
    assert await service.load_ticket(999_999) is None


async def test_a_group_whose_outcome_is_unknown_fails_every_caller_and_retries_nothing(
    fresh_pool: asyncpg.Pool,
) -> None:
    """A lost connection may have come after the commit: a retry could append twice."""
    store = EventStore(fresh_pool)
    first = await start_stream(store, 1)
    appender = GroupAppender(store)
    blocker = await fresh_pool.acquire()
    killer = await fresh_pool.acquire()
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT 1 FROM streams WHERE stream_id = 1 FOR UPDATE")
        calls = [
            asyncio.ensure_future(appender.append(store.prepare(*args)))
            for args in (
                (1, 1, first.hash, [new(posted(5))]),
                (2, 0, None, [new(raised(2), CUSTOMER)]),
                (3, 0, None, [new(raised(3), CUSTOMER)]),
            )
        ]
        # the group's statement waits on the row lock; end its connection there
        waiting = None
        for _ in range(500):
            waiting = await killer.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE '%unnest%'"
            )
            if waiting is not None:
                break
            await asyncio.sleep(0.01)
        assert waiting is not None, "the grouped statement never waited on the lock"
        await killer.execute("SELECT pg_terminate_backend($1)", waiting)
        await tx.rollback()  # a retry, if any, would now go through
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await fresh_pool.release(blocker)
        await fresh_pool.release(killer)
    assert appender.groups == 1
    for outcome in outcomes:
        assert isinstance(outcome, Exception) and not isinstance(outcome, ConcurrencyConflict)
    counts = await fresh_pool.fetch(
        "SELECT stream_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1"
    )
    assert [(r["stream_id"], r["n"]) for r in counts] == [(1, 1)]
