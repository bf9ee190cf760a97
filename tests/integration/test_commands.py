"""The command service on a real PostgreSQL: idempotency, If-Match, failures append nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from domain.errors import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidInput,
    NotRequester,
    TicketAlreadyClosed,
    TicketNotFound,
    VersionMismatch,
)
from domain.events import Actor, MessagePosted, SlaBreached, TicketClosed, TicketRaised
from services.commands import CommandService, Context, fingerprint
from services.eventstore import verify_chain

CUSTOMER = Actor(id="cust-1", role="customer", name="Cara")
OTHER = Actor(id="cust-2", role="customer", name="Olly")
AGENT = Actor(id="agent-1", role="agent", name="Ada")
AUDITOR = Actor(id="aud-1", role="auditor")
SYSTEM = Actor(id="system", role="system")


@pytest.fixture
def svc(fresh_pool: asyncpg.Pool, settings: object) -> CommandService:
    return CommandService(fresh_pool, settings.sla_policy)  # type: ignore[attr-defined]


async def event_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events"))


async def new_ticket(
    svc: CommandService, *, raised_at: datetime | None = None, **kw: object
) -> int:
    if raised_at is not None:  # a ticket raised back then (a service whose clock says so)
        svc = CommandService(svc.store.pool, svc.sla_policy, clock=lambda: raised_at)
    r = await svc.raise_ticket(
        Context(actor=CUSTOMER), subject="Printer", description="on fire", category_id=1, **kw
    )  # type: ignore[arg-type]
    return r.ticket.id


def keyed(actor: Actor, key: str, *body: object) -> Context:
    return Context(actor=actor, idempotency_key=key, request_fingerprint=fingerprint(*body))


# --- idempotency ----------------------------------------------------------------------


async def test_a_repeated_key_returns_the_first_result_and_appends_nothing(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    ctx = keyed(AGENT, "k-1", "POST", f"/tickets/{tid}/messages", "hello")
    first = await svc.post_message(ctx, tid, body="hello")
    count = await event_count(fresh_pool)
    again = await svc.post_message(ctx, tid, body="hello")
    assert again.replayed and not first.replayed
    assert [e.position for e in again.events] == [e.position for e in first.events]
    assert again.ticket == first.ticket and again.version == 2
    assert await event_count(fresh_pool) == count
    # later changes do not leak into the replayed answer: it is the first response
    await svc.post_message(Context(actor=AGENT), tid, body="unrelated")
    third = await svc.post_message(ctx, tid, body="hello")
    assert third.version == 2 and third.ticket == first.ticket


async def test_a_repeated_raise_returns_the_same_ticket(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    ctx = keyed(CUSTOMER, "raise-1", "POST", "/tickets", "Printer")
    a = await svc.raise_ticket(ctx, subject="Printer", description="x", category_id=1)
    b = await svc.raise_ticket(ctx, subject="Printer", description="x", category_id=1)
    assert b.replayed and a.ticket.id == b.ticket.id
    assert await fresh_pool.fetchval("SELECT count(*) FROM streams") == 1


async def test_the_same_key_with_a_different_body_is_refused(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.post_message(keyed(AGENT, "k-2", "hello"), tid, body="hello")
    count = await event_count(fresh_pool)
    with pytest.raises(IdempotencyKeyReused) as info:
        await svc.post_message(keyed(AGENT, "k-2", "goodbye"), tid, body="goodbye")
    assert info.value.kind == "idempotency"
    assert await event_count(fresh_pool) == count


async def test_a_key_whose_command_changed_nothing_is_kept_too(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.assign(Context(actor=AGENT), tid, assignee=AGENT.id)
    count = await event_count(fresh_pool)
    ctx = keyed(AGENT, "k-noop", "assign", AGENT.id)
    first = await svc.assign(ctx, tid, assignee=AGENT.id)  # already theirs: no event
    assert first.events == [] and not first.replayed
    again = await svc.assign(ctx, tid, assignee=AGENT.id)
    assert again.replayed and again.events == [] and again.ticket == first.ticket
    # the key is taken: another request under it is refused and changes nothing
    with pytest.raises(IdempotencyKeyReused):
        await svc.assign(keyed(AGENT, "k-noop", "assign", "agent-2"), tid, assignee="agent-2")
    assert await event_count(fresh_pool) == count
    later = await svc.post_message(Context(actor=AGENT), tid, body="later")
    assert (await svc.assign(ctx, tid, assignee=AGENT.id)).version == later.version - 1


async def test_keys_belong_to_their_principal(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.post_message(keyed(AGENT, "shared", "x"), tid, body="x")
    other_agent = Actor(id="agent-2", role="agent")
    r = await svc.post_message(keyed(other_agent, "shared", "x"), tid, body="x")
    assert not r.replayed and r.version == 3


async def test_concurrent_duplicates_append_once(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    ctx = keyed(AGENT, "dup", "hello")
    results = await asyncio.gather(*(svc.post_message(ctx, tid, body="hello") for _ in range(16)))
    assert await event_count(fresh_pool) == 2
    assert {r.version for r in results} == {2}
    assert {tuple(e.position for e in r.events) for r in results} == {
        tuple(e.position for e in results[0].events)
    }
    assert sum(not r.replayed for r in results) == 1


async def test_concurrent_duplicate_raises_make_one_ticket(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    ctx = keyed(CUSTOMER, "dup-raise", "Printer")
    results = await asyncio.gather(
        *(
            svc.raise_ticket(ctx, subject="Printer", description="x", category_id=1)
            for _ in range(16)
        )
    )
    assert len({r.ticket.id for r in results}) == 1
    assert await fresh_pool.fetchval("SELECT count(*) FROM streams") == 1
    assert await event_count(fresh_pool) == 1


async def test_concurrent_duplicates_of_a_command_the_first_made_invalid_answer_as_it(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    # The repeats that read the ticket after the first committed would be refused (closing
    # a closed ticket, a now stale If-Match): they answer as the first did (SPEC 4).
    tid = await new_ticket(svc)
    ctx = keyed(AGENT, "dup-close", "close")
    closes = await asyncio.gather(*(svc.close(ctx, tid, resolution="done") for _ in range(10)))
    assert {r.version for r in closes} == {2}
    assert sum(not r.replayed for r in closes) == 1
    assert [e.position for r in closes for e in r.events] == [closes[0].events[0].position] * 10

    ctx = Context(
        actor=AGENT,
        idempotency_key="dup-reopen",
        request_fingerprint=fingerprint("reopen"),
        expected_version=2,
    )
    reopens = await asyncio.gather(*(svc.reopen(ctx, tid, reason="again") for _ in range(10)))
    assert {r.version for r in reopens} == {3}
    assert sum(not r.replayed for r in reopens) == 1
    assert await event_count(fresh_pool) == 3


async def test_an_expired_key_may_be_used_again(fresh_pool: asyncpg.Pool, settings: object) -> None:
    now = [datetime(2024, 1, 1, tzinfo=UTC)]
    svc = CommandService(
        fresh_pool,
        settings.sla_policy,  # type: ignore[attr-defined]
        clock=lambda: now[0],
    )
    tid = await new_ticket(svc)
    await svc.post_message(keyed(AGENT, "old", "a"), tid, body="a")
    await fresh_pool.execute("UPDATE idempotency_keys SET created_at = $1", now[0])
    now[0] += timedelta(hours=25)
    r = await svc.post_message(keyed(AGENT, "old", "b"), tid, body="b")
    assert not r.replayed and r.version == 3


async def test_a_failed_command_does_not_burn_its_key(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    with pytest.raises(InvalidInput):
        await svc.post_message(keyed(AGENT, "k-f", ""), tid, body="")
    r = await svc.post_message(keyed(AGENT, "k-f", "fixed"), tid, body="fixed")
    assert not r.replayed and r.version == 2


# --- If-Match ---------------------------------------------------------------------------


async def test_a_stale_if_match_is_refused_and_appends_nothing(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.post_message(Context(actor=AGENT), tid, body="first")
    with pytest.raises(VersionMismatch) as info:
        await svc.assign(Context(actor=AGENT, expected_version=1), tid, assignee="agent-1")
    assert info.value.kind == "precondition"
    assert await event_count(fresh_pool) == 2
    ok = await svc.assign(Context(actor=AGENT, expected_version=2), tid, assignee="agent-1")
    assert ok.version == 3


async def test_if_match_racing_writers_one_wins_the_rest_get_412(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    outcomes = await asyncio.gather(
        *(
            svc.post_message(Context(actor=AGENT, expected_version=1), tid, body=f"m{i}")
            for i in range(16)
        ),
        return_exceptions=True,
    )
    assert sum(1 for o in outcomes if not isinstance(o, BaseException)) == 1
    assert all(isinstance(o, VersionMismatch) for o in outcomes if isinstance(o, BaseException))
    assert await event_count(fresh_pool) == 2


# --- failures append nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "kwargs", "error"),
    [
        (CUSTOMER, {"body": "psst", "visibility": "internal"}, Forbidden),
        (OTHER, {"body": "me too"}, NotRequester),
        (AUDITOR, {"body": "hm"}, Forbidden),
        (AGENT, {"body": "x" * 20_001}, InvalidInput),
        (AGENT, {"body": "ok", "attachments": ["nope"]}, InvalidInput),
    ],
)
async def test_a_refused_message_appends_nothing(
    svc: CommandService,
    fresh_pool: asyncpg.Pool,
    actor: Actor,
    kwargs: dict[str, object],
    error: type[Exception],
) -> None:
    tid = await new_ticket(svc)
    with pytest.raises(error):
        await svc.post_message(Context(actor=actor), tid, **kwargs)  # type: ignore[arg-type]
    assert await event_count(fresh_pool) == 1


async def test_closing_a_closed_ticket_is_a_conflict_that_appends_nothing(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.close(Context(actor=CUSTOMER), tid)
    with pytest.raises(TicketAlreadyClosed):
        await svc.close(Context(actor=AGENT), tid)
    with pytest.raises(TicketAlreadyClosed):
        await svc.post_message(Context(actor=CUSTOMER), tid, body="hello?")
    assert await event_count(fresh_pool) == 2


async def test_a_raise_in_an_unknown_category_appends_nothing(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    with pytest.raises(InvalidInput, match="category"):
        await svc.raise_ticket(
            Context(actor=CUSTOMER), subject="x", description="y", category_id=999_999
        )
    assert await event_count(fresh_pool) == 0
    assert await fresh_pool.fetchval("SELECT count(*) FROM streams") == 0


async def test_a_command_on_an_unknown_ticket_is_not_found(svc: CommandService) -> None:
    with pytest.raises(TicketNotFound):
        await svc.assign(Context(actor=AGENT), 123_456_789, assignee="agent-1")


async def test_a_noop_command_appends_nothing(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc)
    await svc.assign(Context(actor=AGENT), tid, assignee="agent-1")
    again = await svc.assign(Context(actor=AGENT), tid, assignee="agent-1")
    assert again.events == [] and again.version == 2
    assert await event_count(fresh_pool) == 2


# --- what gets stored -------------------------------------------------------------------


async def test_close_immediately_appends_both_events_in_one_append(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    r = await svc.raise_ticket(
        Context(actor=CUSTOMER),
        subject="x",
        description="y",
        category_id=1,
        close_immediately=True,
        resolution_type="Fixed",
        resolution_subject="Printer",
    )
    assert [type(e.event) for e in r.events] == [TicketRaised, TicketClosed]
    assert len({e.transaction_id for e in r.events}) == 1
    assert r.ticket.status == "closed"


async def test_metadata_and_client_time_are_stored_and_hash_chained(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc, raised_at=datetime(2024, 2, 1, tzinfo=UTC))
    client_time = datetime(2024, 2, 3, 4, 5, tzinfo=UTC)
    ctx = Context(
        actor=CUSTOMER,
        request_id="req-1",
        dialect="customer_response",
        occurred_at=client_time,
        idempotency_key="k-meta",
        request_fingerprint=b"f",
    )
    r = await svc.post_message(ctx, tid, body="<p>hi</p>", body_type="html")
    _, events = await svc.load(tid)
    stored = events[-1]
    assert stored.occurred_at == client_time
    assert stored.metadata.actor == CUSTOMER
    assert (stored.metadata.request_id, stored.metadata.correlation_id) == ("req-1", "req-1")
    assert (stored.metadata.dialect, stored.metadata.idempotency_key) == (
        "customer_response",
        "k-meta",
    )
    assert stored.position == r.events[0].position and stored.hash == r.events[0].hash
    assert isinstance(stored.event, MessagePosted)
    assert stored.recorded_at >= stored.occurred_at
    assert verify_chain(events) is None


async def test_only_the_system_records_a_breach_once(
    fresh_pool: asyncpg.Pool, settings: object
) -> None:
    now = [datetime.now(UTC)]
    svc = CommandService(
        fresh_pool,
        settings.sla_policy,  # type: ignore[attr-defined]
        clock=lambda: now[0],
    )
    tid = await new_ticket(svc, priority="urgent")
    with pytest.raises(Forbidden):
        await svc.record_sla_breach(Context(actor=AGENT), tid, target="first_response")
    now[0] += timedelta(hours=2)
    first = await svc.record_sla_breach(Context(actor=SYSTEM), tid, target="first_response")
    assert [type(e.event) for e in first.events] == [SlaBreached]
    second = await svc.record_sla_breach(Context(actor=SYSTEM), tid, target="first_response")
    assert second.events == []
    assert await event_count(fresh_pool) == 2


async def test_a_client_time_in_the_future_is_refused_and_a_past_one_keeps_updated_at(
    svc: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    tid = await new_ticket(svc, raised_at=datetime(2014, 7, 1, tzinfo=UTC))
    before = await fresh_pool.fetchval("SELECT count(*) FROM events")
    with pytest.raises(InvalidInput):
        await svc.post_message(
            Context(actor=CUSTOMER, occurred_at=datetime.now(UTC) + timedelta(days=1)),
            tid,
            body="from the future",
        )
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") == before
    # before 1970: refused for every caller (0001-01-01 UTC would read back as -infinity)
    for ancient in (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC)):
        with pytest.raises(InvalidInput, match="1970"):
            await svc.post_message(
                Context(actor=CUSTOMER, occurred_at=ancient), tid, body="ancient"
            )
    # before the ticket was raised: refused (its history would read out of order)
    with pytest.raises(InvalidInput, match="before the ticket was raised"):
        await svc.post_message(
            Context(actor=CUSTOMER, occurred_at=datetime(2014, 6, 30, tzinfo=UTC)), tid, body="x"
        )
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") == before
    later = datetime(2014, 7, 20, tzinfo=UTC)
    await svc.post_message(Context(actor=CUSTOMER, occurred_at=later), tid, body="newer mail")
    past = datetime(2014, 7, 14, 12, 34, tzinfo=UTC)
    r = await svc.post_message(Context(actor=CUSTOMER, occurred_at=past), tid, body="old mail")
    assert r.ticket.messages[-1].created_at == past
    assert r.ticket.updated_at == later  # last activity never moves backwards


# --- reads ------------------------------------------------------------------------------


async def test_load_ticket_folds_the_same_ticket_as_load(svc: CommandService) -> None:
    tid = await new_ticket(svc)
    await svc.post_message(Context(actor=AGENT), tid, body="on it", visibility="internal")
    await svc.post_message(Context(actor=CUSTOMER), tid, body="thanks")
    await svc.assign(Context(actor=AGENT), tid, assignee=AGENT.id)
    await svc.close(Context(actor=CUSTOMER), tid, resolution="fixed")
    full, events = await svc.load(tid)
    assert len(events) == 5 and full is not None and full.version == 5
    assert await svc.load_ticket(tid) == full
    assert await svc.load_ticket(tid + 10_000) is None
