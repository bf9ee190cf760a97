"""Audit against real PostgreSQL: verify, export, state as of a moment, the global feed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import msgspec
import pytest

from domain.errors import InvalidInput, TicketNotFound
from domain.events import Actor
from projections.consistency import projections_checkpoint
from projections.runner import catch_up
from services import audit
from services.commands import CommandResult, CommandService, Context
from services.eventstore import EventStore, chain_hash
from services.settings import Settings

CUSTOMER = Actor(id="cust-audit", role="customer", name="Cleo")
AGENT = Actor(id="agent-audit", role="agent", name="Aldo")


async def settle(pool: asyncpg.Pool) -> None:
    """Catch the projections up to the head of the log.

    Commit-safe readers only take events older than every running transaction in the
    cluster, so a busy neighbour (another test creating a database) can hold them back
    for a moment: catch up until the checkpoint reaches the head, within a bound.
    """
    store = EventStore(pool)
    for _ in range(1200):
        await catch_up(pool)
        if await projections_checkpoint(pool) == await store.head():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the projections did not reach the head of the log within 60 s")


async def story(c: CommandService) -> tuple[int, list[object]]:
    """A ticket through every kind of command; returns its id and the states seen."""
    seen: list[object] = []
    r = await c.raise_ticket(
        Context(actor=CUSTOMER), subject="Cannot pay", description="Card refused", category_id=2
    )
    tid = r.ticket.id
    seen.append(r.ticket)
    steps: list[Callable[[], Awaitable[CommandResult]]] = [
        lambda: c.post_message(Context(actor=AGENT), tid, body="Which card?"),
        lambda: c.post_message(
            Context(actor=AGENT), tid, body="check fraud", visibility="internal"
        ),
        lambda: c.assign(Context(actor=AGENT), tid, assignee="agent-audit"),
        lambda: c.change_priority(Context(actor=AGENT), tid, priority="high"),
        lambda: c.change_status(Context(actor=AGENT), tid, status="on_hold"),
        lambda: c.change_status(Context(actor=AGENT), tid, status="resolved"),
        lambda: c.rate(Context(actor=CUSTOMER), tid, rating=4, comment="ok"),
        lambda: c.reopen(Context(actor=CUSTOMER), tid, reason="again"),
        lambda: c.close(Context(actor=CUSTOMER), tid, resolution="fine now"),
    ]
    for step in steps:
        result = await step()
        seen.append(result.ticket)
    return tid, seen


async def healthy_db(pool: asyncpg.Pool, n: int = 3) -> list[int]:
    c = CommandService(pool, Settings().sla_policy)
    ids = [(await story(c))[0] for _ in range(n)]
    await settle(pool)
    return ids


# --- verify -----------------------------------------------------------------------------------


async def test_verify_passes_on_a_healthy_database(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await healthy_db(fresh_pool)
    report = await audit.verify(fresh_dsn)
    assert report.ok, report.summary()
    assert report.streams == 3 and report.events == 30
    assert report.tables["ticket_summaries"] == 3
    assert report.tables["ticket_logs"] == 30
    # the scratch schema is gone
    left = await fresh_pool.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'audit_verify_%'"
    )
    assert left == 0


async def test_verify_passes_while_commands_and_the_live_runner_keep_going(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    # A writer and a live runner run throughout; every verify must still compare the live
    # tables and the replay at one checkpoint (it once raced the runner and reported
    # made-up mismatches, e.g. a count one higher live than in the replay).
    await healthy_db(fresh_pool, n=2)
    c = CommandService(fresh_pool, Settings().sla_policy)
    stop = asyncio.Event()

    async def writer() -> None:
        while not stop.is_set():
            await story(c)

    async def runner() -> None:
        while not stop.is_set():
            await catch_up(fresh_pool)
            await asyncio.sleep(0.005)

    tasks = [asyncio.create_task(writer()), asyncio.create_task(runner())]
    try:
        for _ in range(4):
            report = await audit.verify(fresh_dsn)
            assert report.ok, report.summary()
            assert report.tables["ticket_summaries"] >= 2
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") > 60  # it did write


async def test_verify_cli_exits_zero_when_healthy_and_non_zero_naming_the_ticket_when_not(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool, 2)
    settings = Settings(database_url=fresh_dsn)
    out = io.StringIO()
    assert await asyncio.to_thread(audit.verify_main, settings, out) == 0
    assert "OK" in out.getvalue()
    await fresh_pool.execute("UPDATE ticket_summaries SET subject = 'edited' WHERE id = $1", ids[1])
    out = io.StringIO()
    assert await asyncio.to_thread(audit.verify_main, settings, out) == 1
    assert f"ticket {ids[1]}" in out.getvalue()
    assert "subject" in out.getvalue()


async def tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """What a superuser could do behind the service's back."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


async def test_verify_fails_naming_the_ticket_and_event_when_an_event_is_altered(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool)
    victim = ids[1]
    position = await fresh_pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND version = 2", victim
    )
    await tamper(
        fresh_pool,
        "UPDATE events SET data = replace(data::text, 'Which card?', 'Pay again.')::json "
        "WHERE position = $1",
        position,
    )
    report = await audit.verify(fresh_dsn, projections=False)
    assert not report.ok
    chain = [p for p in report.problems if p.kind == "chain"]
    assert [(p.ticket, p.position) for p in chain] == [(victim, position)]
    assert f"ticket {victim}" in chain[0].message and f"position {position}" in chain[0].message


async def test_verify_fails_when_an_event_is_deleted(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool, 2)
    await tamper(fresh_pool, "DELETE FROM events WHERE stream_id = $1 AND version = 4", ids[0])
    report = await audit.verify(fresh_dsn, projections=False)
    assert {p.ticket for p in report.problems} == {ids[0]}
    assert any(p.kind == "version" and "version 5" in p.message for p in report.problems)


async def test_verify_fails_when_the_last_event_is_dropped_and_the_head_disagrees(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool, 2)
    await tamper(fresh_pool, "DELETE FROM events WHERE stream_id = $1 AND version = 10", ids[1])
    report = await audit.verify(fresh_dsn, projections=False)
    assert [(p.kind, p.ticket) for p in report.problems] == [("stream", ids[1])]


async def test_verify_fails_naming_the_ticket_when_a_projection_row_is_edited(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool)
    await fresh_pool.execute("UPDATE ticket_summaries SET priority = 'low' WHERE id = $1", ids[0])
    log_position = await fresh_pool.fetchval(
        "SELECT position FROM ticket_logs WHERE ticket_id = $1 ORDER BY position LIMIT 1 OFFSET 2",
        ids[2],
    )
    await fresh_pool.execute(
        "UPDATE ticket_logs SET actor_id = 'mallory' WHERE position = $1", log_position
    )
    await fresh_pool.execute("DELETE FROM ticket_messages WHERE ticket_id = $1", ids[1])
    report = await audit.verify(fresh_dsn)
    assert not report.ok
    found = {(p.table, p.ticket) for p in report.problems}
    assert found == {
        ("ticket_summaries", ids[0]),
        ("ticket_logs", ids[2]),
        ("ticket_messages", ids[1]),
    }, report.summary()
    log_problem = next(p for p in report.problems if p.table == "ticket_logs")
    assert log_problem.position == log_position
    assert "actor_id" in log_problem.message
    # The hash chains themselves are fine.
    assert not [p for p in report.problems if p.kind != "projection"]


async def test_verify_accepts_a_state_of_the_earlier_format_and_catches_an_altered_one(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    """A live fold stored before the positional codec is not a difference (its other
    columns are still compared); a fold of the current format that does not match the
    replay is."""
    import msgspec

    from projections.fold import decode_state, encode_state

    ids = await healthy_db(fresh_pool)
    state = await fresh_pool.fetchval("SELECT state FROM ticket_summaries WHERE id = $1", ids[0])
    earlier = msgspec.msgpack.Encoder().encode(decode_state(state))
    await fresh_pool.execute(
        "UPDATE ticket_summaries SET state = $2 WHERE id = $1", ids[0], earlier
    )
    report = await audit.verify(fresh_dsn)
    assert report.ok, report.summary()

    other = await fresh_pool.fetchval("SELECT state FROM ticket_summaries WHERE id = $1", ids[1])
    altered = msgspec.structs.replace(decode_state(other), reopened_count=7)
    await fresh_pool.execute(
        "UPDATE ticket_summaries SET state = $2 WHERE id = $1", ids[1], encode_state(altered)
    )
    report = await audit.verify(fresh_dsn)
    assert {(p.table, p.ticket) for p in report.problems} == {("ticket_summaries", ids[1])}


# --- export -----------------------------------------------------------------------------------


async def test_export_writes_one_verifiable_json_line_per_event(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool, 2)
    out = io.StringIO()
    assert await audit.export(fresh_dsn, out) == 20
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 20
    assert set(lines[0]) == {
        "position",
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
    }
    # The stored bytes are exported verbatim: the chain can be re-checked offline.
    raw_lines = out.getvalue().splitlines()
    for raw, line in zip(raw_lines, lines, strict=True):
        data = msgspec.json.encode(msgspec.json.decode(raw)["data"])
        stored = await fresh_pool.fetchval(
            "SELECT data::text FROM events WHERE position = $1", line["position"]
        )
        assert data == msgspec.json.encode(msgspec.json.decode(stored))
        expected = chain_hash(
            bytes.fromhex(line["prev_hash"]) if line["prev_hash"] else None,
            line["stream_id"],
            line["version"],
            line["type"],
            line["schema"],
            datetime.fromisoformat(line["occurred_at"]),
            datetime.fromisoformat(line["recorded_at"]),
            stored.encode(),
            (
                await fresh_pool.fetchval(
                    "SELECT metadata::text FROM events WHERE position = $1", line["position"]
                )
            ).encode(),
        )
        assert expected.hex() == line["hash"]

    one = io.StringIO()
    assert await audit.export(fresh_dsn, one, ticket=ids[1]) == 10
    versions = [json.loads(x)["version"] for x in one.getvalue().splitlines()]
    assert versions == list(range(1, 11))
    assert {json.loads(x)["stream_id"] for x in one.getvalue().splitlines()} == {ids[1]}

    cut = datetime.fromisoformat(lines[15]["recorded_at"])
    recent = io.BytesIO()
    n = await audit.export(fresh_dsn, recent, since=cut)
    assert n == sum(1 for x in lines if datetime.fromisoformat(x["recorded_at"]) >= cut)
    assert len(recent.getvalue().splitlines()) == n


async def test_export_cli_writes_to_the_given_stream(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    ids = await healthy_db(fresh_pool, 1)
    out = io.StringIO()
    settings = Settings(database_url=fresh_dsn)
    assert await asyncio.to_thread(audit.export_main, settings, ids[0], None, out) == 0
    assert len(out.getvalue().splitlines()) == 10
    missing = io.StringIO()
    assert await asyncio.to_thread(audit.export_main, settings, 10**12, None, missing) == 1
    assert missing.getvalue() == ""


# --- state as of --------------------------------------------------------------------------------


async def test_state_at_each_version_is_the_state_after_the_matching_command(
    pool: asyncpg.Pool,
) -> None:
    c = CommandService(pool, Settings().sla_policy)
    tid, seen = await story(c)
    for version, state in enumerate(seen, start=1):
        assert await audit.state_as_of(c, tid, version=version) == state
    assert await audit.state_as_of(pool, tid) == seen[-1]


async def test_as_of_between_two_events_is_the_state_after_the_earlier(
    pool: asyncpg.Pool,
) -> None:
    c = CommandService(pool, Settings().sla_policy)
    tid, seen = await story(c)
    _, events = await c.load(tid)
    for i in range(len(events) - 1):
        a, b = events[i].recorded_at, events[i + 1].recorded_at
        between = a + (b - a) / 2
        assert await audit.state_as_of(c, tid, as_of=between) == seen[i]
        assert await audit.state_as_of(c, tid, as_of=a) == seen[i]
    late = events[-1].recorded_at + timedelta(days=365)
    assert await audit.state_as_of(c, tid, as_of=late) == seen[-1]


async def test_before_the_first_event_and_past_the_last_version_there_is_no_ticket(
    pool: asyncpg.Pool,
) -> None:
    c = CommandService(pool, Settings().sla_policy)
    tid, _ = await story(c)
    _, events = await c.load(tid)
    with pytest.raises(TicketNotFound):
        await audit.state_as_of(c, tid, as_of=events[0].recorded_at - timedelta(microseconds=1))
    with pytest.raises(TicketNotFound):
        await audit.state_as_of(c, tid, version=11)
    with pytest.raises(TicketNotFound):
        await audit.state_as_of(c, 10**15, version=1)
    with pytest.raises(InvalidInput):
        await audit.state_as_of(c, tid, version=0)
    with pytest.raises(InvalidInput):
        await audit.state_as_of(c, tid, version=1, as_of=events[0].recorded_at)


# --- the global feed ------------------------------------------------------------------------------


async def test_feed_in_small_pages_returns_every_event_once_in_commit_order_while_appending(
    fresh_pool: asyncpg.Pool,
) -> None:
    c = CommandService(fresh_pool, Settings().sla_policy)
    ids = [
        (
            await c.raise_ticket(
                Context(actor=CUSTOMER), subject=f"s{i}", description="d", category_id=1
            )
        ).ticket.id
        for i in range(6)
    ]
    stop = asyncio.Event()

    async def appender(k: int) -> None:
        for n in range(25):
            await c.post_message(Context(actor=AGENT), ids[(k + n) % len(ids)], body=f"{k}-{n}")

    total = 6 + 4 * 25

    async def reader() -> list[int]:
        got: list[int] = []
        after = 0
        for _ in range(100_000):  # a bound, not a timing: the feed must drain eventually
            page = await audit.feed(fresh_pool, after=after, limit=7)
            got.extend(e.position for e in page.items)
            after = page.next_cursor
            if not page.items:
                if stop.is_set() and len(got) >= total:
                    return got
                await asyncio.sleep(0.001 if not stop.is_set() else 0.05)
        raise AssertionError(f"the feed returned {len(got)} of {total} events")

    read = asyncio.create_task(reader())
    await asyncio.gather(*(appender(k) for k in range(4)))
    stop.set()
    got = await read
    commit_order = [
        r["position"]
        for r in await fresh_pool.fetch(
            "SELECT position FROM events ORDER BY transaction_id, position"
        )
    ]
    assert len(got) == len(set(got)) == total
    assert got == commit_order


async def test_feed_filters_by_type_and_recorded_time(fresh_pool: asyncpg.Pool) -> None:
    await healthy_db(fresh_pool, 2)  # settles: every event is commit-safe now
    page = await audit.feed(fresh_pool, limit=1000, types=["MessagePosted"])
    assert len(page.items) == 4 and {e.type for e in page.items} == {"MessagePosted"}
    everything = (await audit.feed(fresh_pool, limit=1000)).items
    assert len(everything) == 20
    since, until = everything[5].recorded_at, everything[12].recorded_at
    window = await audit.feed(fresh_pool, limit=1000, since=since, until=until)
    assert [e.position for e in window.items] == [
        e.position for e in everything if since <= e.recorded_at < until
    ]
    first = everything[0]
    assert first.type == "TicketRaised" and first.prev_hash is None and len(first.hash) == 64
    assert first.metadata["actor"]["id"] == CUSTOMER.id
    with pytest.raises(InvalidInput):
        await audit.feed(fresh_pool, after=10**12)


async def test_export_into_a_pipe_that_closes_early_ends_quietly(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await healthy_db(fresh_pool, 200)  # 2,000 lines: far more than a pipe buffers
    env = {**os.environ, "TICKETING_DATABASE_URL": fresh_dsn}
    cli = Path(sys.executable).with_name("ticketing")
    proc = await asyncio.create_subprocess_shell(
        f"'{cli}' audit export | head -1; echo rc=${{PIPESTATUS[0]}}",
        env=env,
        executable="/bin/bash",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    first, status = out.decode().splitlines()
    assert json.loads(first)["version"] == 1
    assert status == "rc=0" and b"Traceback" not in err, err.decode()
