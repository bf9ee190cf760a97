"""List, count and log queries over the read models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from proj_helpers import AGENTS, CUSTOMERS, proj_catch_up

from projections import queries
from projections.queries import TicketFilter
from services.commands import CommandService, Context

NOW = datetime.now(UTC)


async def _list(pool: asyncpg.Pool, now: datetime = NOW, **kw: object) -> list[int]:
    rows, _ = await queries.list_tickets(
        pool,
        TicketFilter(**kw),
        limit=100,
        now=now,
        timezone="UTC",  # type: ignore[arg-type]
    )
    return [r.id for r in rows]


async def test_filters_derived_statuses_search_and_keyset_pages(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    cust, other, agent = CUSTOMERS[0], CUSTOMERS[1], AGENTS[0]
    ids = []
    for i in range(7):
        r = await proj_service.raise_ticket(
            Context(actor=cust if i % 2 == 0 else other),
            subject=f"ticket {i} about the printer" if i == 3 else f"ticket {i}",
            description="details",
            category_id=2 if i == 4 else 1,
            priority="urgent" if i == 5 else "low",
        )
        ids.append(r.ticket.id)
    await proj_service.assign(Context(actor=agent), ids[1], assignee=agent.id)
    await proj_service.change_status(Context(actor=agent), ids[2], status="resolved")
    await proj_service.close(Context(actor=cust), ids[0])
    await proj_service.post_message(Context(actor=agent), ids[6], body="the flux capacitor")
    await proj_service.change_status(Context(actor=agent), ids[6], status="on_hold")
    await proj_catch_up(fresh_pool)

    newest_first = list(reversed(ids))
    assert await _list(fresh_pool) == newest_first
    assert await _list(fresh_pool, status="closed") == [ids[0]]
    assert await _list(fresh_pool, status="unresolved") == [
        i for i in newest_first if i not in (ids[0], ids[2])
    ]
    assert await _list(fresh_pool, status="unassigned") == [
        i for i in newest_first if i not in (ids[0], ids[1], ids[2])
    ]
    assert await _list(fresh_pool, assignee=agent.id) == [ids[1]]
    assert await _list(fresh_pool, requester=cust.id) == [ids[6], ids[4], ids[2], ids[0]]
    assert await _list(fresh_pool, category_id=2) == [ids[4]]
    assert await _list(fresh_pool, priority="urgent") == [ids[5]]
    assert await _list(fresh_pool, q="printers") == [ids[3]]
    assert await _list(fresh_pool, q="capacitor") == [ids[6]]  # public message bodies too
    # urgent is due in 4 h, low in 168 h; the on-hold ticket's clock is paused
    in_5h = NOW + timedelta(hours=5)
    assert await _list(fresh_pool, now=in_5h, status="overdue") == [ids[5]]
    assert await _list(fresh_pool, now=NOW + timedelta(days=8), status="overdue") == [
        i for i in newest_first if i not in (ids[0], ids[2], ids[6])
    ]
    assert ids[5] in await _list(fresh_pool, now=in_5h, status="duetoday")
    assert ids[1] not in await _list(fresh_pool, now=NOW, status="duetoday")
    # overdue and due today agree on the paused ticket: neither while its clock stands
    due_today_in_8_days = await _list(fresh_pool, now=NOW + timedelta(days=8), status="duetoday")
    assert ids[6] not in due_today_in_8_days and ids[5] in due_today_in_8_days
    assert await _list(fresh_pool, created_from=NOW + timedelta(days=1)) == []
    assert (
        await queries.count_tickets(
            fresh_pool, TicketFilter(status="unresolved"), now=NOW, timezone="UTC"
        )
        == 5
    )

    seen: list[int] = []
    cursor = None
    while True:
        rows, cursor = await queries.list_tickets(
            fresh_pool, TicketFilter(), limit=3, cursor=cursor, now=NOW, timezone="UTC"
        )
        seen += [r.id for r in rows]
        if cursor is None:
            break
    assert seen == newest_first
    page, _ = await queries.list_tickets(
        fresh_pool, TicketFilter(), limit=2, offset=2, now=NOW, timezone="UTC"
    )
    assert [r.id for r in page] == newest_first[2:4]
    with pytest.raises(ValueError):
        await queries.list_tickets(
            fresh_pool, TicketFilter(), limit=2, cursor="not-a-cursor!", now=NOW, timezone="UTC"
        )
    with pytest.raises(ValueError):
        await _list(fresh_pool, status="sleeping")


async def test_logs_one_row_per_event_with_actor_and_phrase(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    cust, agent = CUSTOMERS[2], AGENTS[1]
    t = (
        await proj_service.raise_ticket(
            Context(actor=cust), subject="logs", description="d", category_id=1
        )
    ).ticket.id
    other = (
        await proj_service.raise_ticket(
            Context(actor=CUSTOMERS[3]), subject="other", description="d", category_id=1
        )
    ).ticket.id
    await proj_service.assign(Context(actor=agent), t, assignee="agent-7")
    await proj_service.post_message(Context(actor=agent), t, body="psst", visibility="internal")
    await proj_service.change_status(Context(actor=agent), t, status="resolved")
    await proj_catch_up(fresh_pool)
    logs = await queries.list_logs(fresh_pool, ticket_id=t, limit=50)
    assert [row.action_text for row in logs] == [
        "Raised the ticket",
        "Assigned to agent-7",
        "Added an internal note",
        "Updated ticket status to resolved",
    ]
    assert logs[0].action == "TicketRaised"
    assert logs[0].actor_id == cust.id and logs[1].actor_role == "agent"
    assert [r.position for r in logs] == sorted(r.position for r in logs)
    assert await queries.count_logs(fresh_pool, ticket_id=t) == 4
    assert await queries.count_logs(fresh_pool, requester=cust.id) == 4
    assert await queries.count_logs(fresh_pool, requester=cust.id, public_only=True) == 3
    assert await queries.count_logs(fresh_pool) == 5
    assert [r.ticket_id for r in await queries.list_logs(fresh_pool, limit=2, offset=1)] == [
        other,
        t,
    ]
    assert await queries.category_counts(fresh_pool) == {1: {"open": 1, "resolved": 1}}
    assert await queries.agent_counts(fresh_pool) == {"agent-7": {"resolved": 1}}


@pytest.mark.parametrize("window", [2, 1000])
async def test_keyword_search_finds_the_same_newest_matches_whichever_plan_serves_it(
    proj_service: CommandService,
    fresh_pool: asyncpg.Pool,
    monkeypatch: pytest.MonkeyPatch,
    window: int,
) -> None:
    # A window of 2 forces the every-candidate branch for all but the commonest word;
    # 1000 serves every page from the newest-first walks. Both must agree exactly.
    monkeypatch.setattr(queries, "KEYWORD_WALK_WINDOW", window)
    monkeypatch.setattr(queries, "KEYWORD_RECENT_WINDOW", window)
    cust = CUSTOMERS[0]
    ids = []
    for i in range(9):
        words = ["router"] + (["modem"] if i % 3 == 0 else []) + (["antenna"] if i == 1 else [])
        r = await proj_service.raise_ticket(
            Context(actor=cust),
            subject=" ".join(words),
            description="details",
            category_id=1,
        )
        ids.append(r.ticket.id)
    await proj_catch_up(fresh_pool)
    newest = list(reversed(ids))
    assert await _list(fresh_pool, q="router") == newest
    assert await _list(fresh_pool, q="modem") == [i for n, i in enumerate(ids) if n % 3 == 0][::-1]
    assert await _list(fresh_pool, q="antenna") == [ids[1]]
    assert await _list(fresh_pool, q="antenna", requester="someone-else") == []

    pages: list[int] = []
    cursor = None
    while True:
        rows, cursor = await queries.list_tickets(
            fresh_pool, TicketFilter(q="router"), limit=2, cursor=cursor, now=NOW, timezone="UTC"
        )
        pages += [r.id for r in rows]
        if cursor is None:
            break
    assert pages == newest
