"""Keyword lists through the ordered term index equal the plain full-text filter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from proj_helpers import AGENTS, CUSTOMERS, proj_assert_equals_fold, proj_catch_up

from bench.seed import seed_tickets
from projections import queries
from projections.queries import TicketFilter
from projections.rebuild import rebuild_all
from services.commands import CommandService, Context

QUERIES = [
    "printer",
    "Printers",
    "invoice refund",
    "refund invoice problem",
    '"printer problem"',
    '"customer says"',
    '"please help" -work',
    "printer or refund",
    "fire or smoke or refund",
    "printer or -invoice",
    "-printer",
    "printer -invoice",
    "problem -printer -invoice",
    "zeppelin",
    "printer zeppelin",
    "printer or zeppelin",
    "the",
    "the or a",
    "-the",
    "e-mail",
    "capacitor",
    "flux or capacitor",
    "help please",
    "problem",
]


async def _filters(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    requester = await pool.fetchval(
        "SELECT requester_id FROM ticket_summaries GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
    )
    middle = await pool.fetchval(
        "SELECT created_at FROM ticket_summaries ORDER BY created_at, id "
        "OFFSET (SELECT count(*) / 2 FROM ticket_summaries) LIMIT 1"
    )
    return [
        {},
        {"status": "open"},
        {"status": "unresolved"},
        {"status": "closed"},
        {"priority": "high"},
        {"requester": requester},
        {"requester": CUSTOMERS[0].id},
        {"assignee": AGENTS[0].id},
        {"category_id": 2},
        {"created_from": middle},
        {"created_to": middle, "priority": "low"},
    ]


async def _plain(pool: asyncpg.Pool, f: TicketFilter, now: datetime) -> list[int]:
    """``search @@ websearch_to_tsquery(...)`` with the other filters, newest first."""
    sql, args = queries._list_sql(
        f, limit=100_000, cursor=None, offset=None, now=now, timezone="UTC", keyword=None
    )
    assert "ticket_search_terms" not in sql
    return [r["id"] for r in await pool.fetch(sql, *args)]


async def _by_cursor(pool: asyncpg.Pool, f: TicketFilter, now: datetime, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        rows, cursor = await queries.list_tickets(
            pool, f, limit=limit, cursor=cursor, now=now, timezone="UTC"
        )
        seen += [r.id for r in rows]
        if cursor is None:
            return seen
        assert len(rows) == limit


async def _consistent(pool: asyncpg.Pool, f: TicketFilter, now: datetime, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = None
    while True:
        rows, cursor, lag = await queries.list_tickets_consistent(
            pool, f, limit=limit, cursor=cursor, now=now, timezone="UTC", wait_ms=2000
        )
        assert lag is None
        seen += [r.id for r in rows]
        if cursor is None:
            return seen


async def _by_offset(pool: asyncpg.Pool, f: TicketFilter, now: datetime, limit: int) -> list[int]:
    seen: list[int] = []
    offset = 0
    while True:
        rows, _ = await queries.list_tickets(
            pool, f, limit=limit, offset=offset, now=now, timezone="UTC"
        )
        seen += [r.id for r in rows]
        if len(rows) < limit:
            return seen
        offset += limit


async def _load(service: CommandService, dsn: str, pool: asyncpg.Pool) -> None:
    # Seeded tickets share their seconds (ties on created_at are broken by id), then
    # tickets with messages: public ones add words, internal notes must not.
    await seed_tickets(dsn, 240, batch=100, spread_seconds=20, overdue_every=0)
    await seed_tickets(
        dsn,
        30,
        batch=30,
        seed=9,
        text=("Printer on fire", "It smokes since the last update"),
        spread_seconds=0,
        overdue_every=0,
    )
    for i in range(12):
        cust = CUSTOMERS[i % 2]
        t = (
            await service.raise_ticket(
                Context(actor=cust),
                subject=f"printer {'invoice' if i % 3 == 0 else 'refund'} ticket {i}",
                description="the e-mail bounced",
                category_id=2,
                priority="high" if i % 2 else "low",
            )
        ).ticket.id
        if i % 2 == 0:
            await service.post_message(Context(actor=AGENTS[0]), t, body="a flux capacitor")
        if i % 3 == 1:
            await service.post_message(
                Context(actor=AGENTS[1]), t, body="zeppelin capacitor", visibility="internal"
            )
        if i % 4 == 0:
            await service.assign(Context(actor=AGENTS[0]), t, assignee=AGENTS[0].id)
        if i % 5 == 0:
            await service.close(Context(actor=cust), t, resolution="done")
    await proj_catch_up(pool, batch_size=50)


@pytest.mark.parametrize(
    "windows",
    [
        pytest.param((2, 2, 1), id="tiny-windows"),  # every stage and the fallback in turn
        pytest.param((1000, 1000, 500), id="default-like"),
    ],
)
async def test_keyword_lists_equal_the_plain_full_text_filter(
    proj_service: CommandService,
    fresh_pool: asyncpg.Pool,
    fresh_dsn: str,
    monkeypatch: pytest.MonkeyPatch,
    windows: tuple[int, int, int],
) -> None:
    walk, recent, pick = windows
    monkeypatch.setattr(queries, "KEYWORD_WALK_WINDOW", walk)
    monkeypatch.setattr(queries, "KEYWORD_RECENT_WINDOW", recent)
    monkeypatch.setattr(queries, "KEYWORD_PICK_BOUND", pick)
    await _load(proj_service, fresh_dsn, fresh_pool)
    await fresh_pool.execute("ANALYZE")
    now = datetime.now(UTC) + timedelta(minutes=1)
    nonempty = 0
    by_notes = 0
    for q in QUERIES:
        for kw, notes in [(kw, n) for kw in await _filters(fresh_pool) for n in (False, True)]:
            # internal_notes: the walk merged with the notes' matches, against the plain
            # filter's "search matches OR one internal note does"
            f = TicketFilter(q=q, internal_notes=notes, **kw)
            expected = await _plain(fresh_pool, f, now)
            nonempty += bool(expected)
            if notes:
                by_notes += expected != await _plain(
                    fresh_pool, TicketFilter(q=q, internal_notes=False, **kw), now
                )
            what = f"q={q!r} {kw} internal_notes={notes}"
            assert await _by_cursor(fresh_pool, f, now, 7) == expected, what
            assert await _by_offset(fresh_pool, f, now, 9) == expected, what
            # counts find their candidates through the term index, not a scan
            n = await queries.count_tickets(fresh_pool, f, now=now, timezone="UTC")
            assert n == len(expected), what
            if not kw or "requester" in kw:
                assert await _consistent(fresh_pool, f, now, 5) == expected, what
    assert nonempty > len(QUERIES) * 3  # the cases are not all empty
    assert by_notes > 10  # and internal notes changed many of them
    # one page of many, and the same pages after a rebuild
    big = TicketFilter(q="problem")
    before = await _by_cursor(fresh_pool, big, now, 50)
    assert len(before) > 200
    await rebuild_all(fresh_dsn)
    assert await _by_cursor(fresh_pool, big, now, 50) == before


async def test_public_messages_are_searchable_by_all_and_internal_notes_by_staff_only(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    cust, agent = CUSTOMERS[0], AGENTS[0]
    t = (
        await proj_service.raise_ticket(
            Context(actor=cust), subject="Router blinks", description="orange", category_id=1
        )
    ).ticket.id
    other = (
        await proj_service.raise_ticket(
            Context(actor=cust), subject="Modem", description="quiet", category_id=1
        )
    ).ticket.id
    await proj_catch_up(fresh_pool)
    now = datetime.now(UTC) + timedelta(minutes=1)

    async def found(q: str, internal_notes: bool = False) -> list[int]:
        f = TicketFilter(q=q, internal_notes=internal_notes)
        rows, _ = await queries.list_tickets(fresh_pool, f, limit=10, now=now, timezone="UTC")
        return [r.id for r in rows]

    async def terms(ticket: int) -> set[str]:
        rows = await fresh_pool.fetch(
            "SELECT term FROM ticket_search_terms WHERE ticket_id = $1", ticket
        )
        return {r["term"] for r in rows}

    assert await found("router") == [t]
    assert await found("flywheel") == []
    assert await terms(t) == {"router", "blink", "orang"}
    await proj_service.post_message(
        Context(actor=agent), t, body="Replace the flywheel, the router is fine"
    )
    await proj_service.post_message(
        Context(actor=agent), t, body="gyroscope secret", visibility="internal"
    )
    await proj_service.post_message(Context(actor=cust), other, body="gyroscope? router!")
    await proj_catch_up(fresh_pool)
    assert await found("flywheel") == [t]
    assert await found("flywheels router") == [t]
    assert await found("gyroscope") == [other]  # the internal note is not searched
    assert await found("gyroscope", internal_notes=True) == [other, t]  # unless allowed
    assert await found("secret gyroscope", internal_notes=True) == [t]
    assert await found("secret router", internal_notes=True) == []  # one note, or the rest
    assert await found("router") == [other, t]
    assert await terms(t) == {"router", "blink", "orang", "replac", "flywheel", "fine"}
    assert "gyroscop" in await terms(other)
    await proj_assert_equals_fold(fresh_pool)
    await rebuild_all(fresh_dsn)
    assert await terms(t) == {"router", "blink", "orang", "replac", "flywheel", "fine"}
    assert await found("gyroscope") == [other]
    assert await found("gyroscope", internal_notes=True) == [other, t]


async def test_terms_whose_hashes_collide_share_a_walk_range_but_not_their_matches(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    # hashtext('w528') = hashtext('w235398'): both lexemes' rows share walk_key ranges
    a, b = "w528", "w235398"
    assert await fresh_pool.fetchval("SELECT hashtext($1) = hashtext($2)", a, b)
    words = [a, b, f"{a} {b}", a, "other", b, a]
    ids = []
    for i, w in enumerate(words * 3):
        r = await proj_service.raise_ticket(
            Context(actor=CUSTOMERS[i % 2]), subject=w, description="d", category_id=1
        )
        ids.append(r.ticket.id)
    await proj_catch_up(fresh_pool)
    now = datetime.now(UTC) + timedelta(minutes=1)
    for q in (a, b, f"{a} {b}", f"{a} or {b}", f"{a} -{b}"):
        for kw in ({}, {"requester": CUSTOMERS[0].id}):
            f = TicketFilter(q=q, **kw)
            expected = await _plain(fresh_pool, f, now)
            assert expected, q
            assert await _by_cursor(fresh_pool, f, now, 2) == expected, q
    await proj_assert_equals_fold(fresh_pool)  # walk_key included


async def test_keyword_lists_keep_one_generic_plan_whatever_the_word(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    """The keyword statement is the same text for every single-word query, and its
    prepared statement settles on a generic plan instead of being planned again for each
    word (planning it cost about 1 ms per uncached list)."""
    # statistics that tell common lexemes from rare ones: planned with the word, a rare
    # one's plan looks far cheaper than the generic plan
    await _load(proj_service, fresh_dsn, fresh_pool)
    await seed_tickets(
        fresh_dsn, 20_000, batch=20_000, seed=5, text=("Printer on fire", "It smokes")
    )
    await rebuild_all(fresh_dsn)
    await fresh_pool.execute("ANALYZE")
    now = datetime.now(UTC) + timedelta(minutes=1)
    words = ["printer", "zeppelin", "refund", "capacitor", "problem", "invoice", "fire", "help"]
    for notes in (False, True):
        statements = [
            await queries._statement(
                fresh_pool, TicketFilter(q=w, internal_notes=notes), 20, None, None, now, "UTC"
            )
            for w in words * 2
        ]
        sql = statements[0][0]
        assert all(s == sql for s, _ in statements)
        # planned with each word's own statistics, the plans cost about the same
        costs = [
            json.loads(await fresh_pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args))[0]["Plan"][
                "Total Cost"
            ]
            for _, args in statements
        ]
        assert max(costs) < 1.5 * min(costs), costs
        async with fresh_pool.acquire() as conn:
            prepared = await conn.prepare(sql)
            for _, args in statements:
                await prepared.fetch(*args)
            generic = await conn.fetchval(
                "SELECT generic_plans FROM pg_prepared_statements WHERE statement = $1", sql
            )
        assert generic >= len(statements) - 5, f"internal_notes={notes}"


async def test_counts_of_plain_words_read_only_the_term_index(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await _load(proj_service, fresh_dsn, fresh_pool)
    now = datetime.now(UTC) + timedelta(minutes=1)
    for q in ("printer", "printer refund", "printer or refund"):
        plan = await queries.keyword_plan(fresh_pool, q)
        assert plan.exact
        args: list[Any] = []
        sql = queries._exact_count_sql(TicketFilter(q=q), plan.exact, now, "UTC", args)
        explained = await fresh_pool.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        assert "ticket_summaries" not in explained, q
    # a phrase needs each candidate's vector: not answered by the term index alone
    phrase = await queries.keyword_plan(fresh_pool, '"printer problem"')
    assert phrase.exact is None
