"""The read side: ticket lists, counts and logs served from the live read models.

Every query names its tables unqualified, so it follows a rebuild's swap (the tables in
the live schema are replaced in one transaction; PostgreSQL re-resolves the names of a
prepared statement when a table it uses is moved, and the column types never change, so
asyncpg's statement cache stays valid). Callers first wait for read-your-writes with
``projections.consistency.wait_for_projections``.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
import msgspec

from domain.events import PRIORITIES, STATUSES
from domain.sla import end_of_local_day
from projections import tsquery
from projections.tickets import term_key_sql
from projections.tsquery import Cover

if TYPE_CHECKING:
    from projections.consistency import ReadModelVersion, VersionProbe

DERIVED_STATUSES = ("unresolved", "unassigned", "overdue", "duetoday")
MAX_LIMIT = 1000


class TicketRow(msgspec.Struct, frozen=True):
    """One ``ticket_summaries`` row."""

    id: int
    subject: str
    description: str
    status: str
    priority: str
    category_id: int
    requester_id: str
    requester_role: str
    requester_name: str | None
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    first_response_at: datetime | None
    sla_paused: bool
    first_response_breached: bool
    resolution_breached: bool
    rating: int | None
    message_count: int
    last_activity_at: datetime
    closed_at: datetime | None
    resolved_at: datetime | None
    rating_comment: str | None = None
    resolution: str | None = None
    public_message_count: int = 0


class TicketFilter(msgspec.Struct, frozen=True, kw_only=True):
    # open|in_progress|on_hold|resolved|closed or derived unresolved|unassigned|overdue|duetoday
    status: str | None = None
    priority: str | None = None
    assignee: str | None = None
    requester: str | None = None  # requester id; the API sets it to the caller's id for customers
    category_id: int | None = None
    q: str | None = None  # full text (websearch syntax)
    created_from: datetime | None = None
    created_to: datetime | None = None
    # q also matches a ticket by the words of one of its internal notes (for those who may
    # read them: never set for customers)
    internal_notes: bool = False


class LogRow(msgspec.Struct, frozen=True):
    position: int
    ticket_id: int
    action: str
    action_text: str
    actor_id: str
    actor_role: str
    actor_name: str | None
    at: datetime


TICKET_COLUMNS = ", ".join(f for f in TicketRow.__struct_fields__)
LOG_COLUMNS = ", ".join(LogRow.__struct_fields__)


def _ticket(row: asyncpg.Record) -> TicketRow:
    return TicketRow(*row.values())


# --- cursors ----------------------------------------------------------------------------


class _Cursor(msgspec.Struct, array_like=True, frozen=True):
    created_at: datetime
    id: int


_cursor_decoder = msgspec.msgpack.Decoder(_Cursor)


def encode_cursor(created_at: datetime, ticket_id: int) -> str:
    raw = msgspec.msgpack.encode(_Cursor(created_at, ticket_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """Raise ValueError on anything that is not a cursor this module issued."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        c = _cursor_decoder.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError, TypeError):
        raise ValueError("malformed cursor: pass back the next_cursor of a previous page") from None
    if c.created_at.tzinfo is None:
        raise ValueError("malformed cursor: pass back the next_cursor of a previous page")
    return c.created_at, c.id


# --- filters ----------------------------------------------------------------------------


def _binder(args: list[Any]) -> Callable[[Any], str]:
    """A function that appends a value to a statement's ``args`` and returns its
    placeholder (``$n``)."""

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    return arg


def _where(
    f: TicketFilter,
    now: datetime,
    timezone: str,
    args: list[Any],
    *,
    include_q: bool = True,
    cover: Cover | None = None,
) -> str:
    """The WHERE clause of filter ``f``; its full-text query, when ``include_q``, finds
    its candidates through the term index when the query's ``cover`` is given, else is a
    check on every row the rest of the statement reads."""
    arg = _binder(args)

    clauses: list[str] = []
    unresolved = "status NOT IN ('resolved', 'closed')"
    if f.status is not None:
        s = f.status.strip().lower()
        if s in STATUSES:
            clauses.append(f"status = {arg(s)}")
        elif s == "unresolved":
            clauses.append(unresolved)
        elif s == "unassigned":
            clauses.append(f"{unresolved} AND assignee IS NULL")
        elif s == "overdue":
            clauses.append(f"{unresolved} AND NOT sla_paused AND resolution_due_at < {arg(now)}")
        elif s == "duetoday":
            # on hold, a ticket's clock stands still: it is due no day until it resumes
            # (as it is overdue no longer)
            clauses.append(
                f"{unresolved} AND NOT sla_paused "
                f"AND resolution_due_at < {arg(end_of_local_day(now, timezone))}"
            )
        else:
            raise ValueError(
                f"unknown status {f.status!r}: use one of {', '.join(STATUSES + DERIVED_STATUSES)}"
            )
    if f.priority is not None:
        p = f.priority.strip().lower()
        if p not in PRIORITIES:
            raise ValueError(f"unknown priority {f.priority!r}: use one of {', '.join(PRIORITIES)}")
        clauses.append(f"priority = {arg(p)}")
    if f.assignee is not None:
        clauses.append(f"assignee = {arg(f.assignee)}")
    if f.requester is not None:
        clauses.append(f"requester_id = {arg(f.requester)}")
    if f.category_id is not None:
        clauses.append(f"category_id = {arg(f.category_id)}")
    if f.q is not None and f.q.strip() and include_q:
        q = arg(f.q.strip())
        match = f"search @@ websearch_to_tsquery('english', {q})"
        notes = _internal_note_matches(q) if f.internal_notes else None
        if notes is not None:
            match = f"({match} OR id IN ({notes}))"  # a hashed subplan: one lookup a row
        if cover is not None:
            # the candidates (and the notes' tickets) are an index condition on the key
            found = _candidates([arg(t) for t in _rarest_terms(cover)], None)
            if notes is not None:
                found += f" UNION ALL {notes}"
            match = f"id = ANY(ARRAY({found})) AND {match}"
        clauses.append(match)
    if f.created_from is not None:
        clauses.append(f"created_at >= {arg(f.created_from)}")
    if f.created_to is not None:
        clauses.append(f"created_at <= {arg(f.created_to)}")
    return " AND ".join(clauses) if clauses else "TRUE"


def _rarest_terms(cover: Cover) -> list[str]:
    """One lexeme per alternative of ``cover``: the rarest by the term index's
    statistics (``_order_candidates``), else the first."""
    freqs = _term_stats[1]
    return [min(group, key=lambda t: freqs.get(t, 0.0)) for group in cover]


def _candidates(terms: Sequence[str], after: tuple[str, str] | None) -> str:
    """The ids of every ticket holding one of ``terms`` (SQL expressions, one per
    alternative of a cover), older than the cursor ``after``: a superset of a query's
    matches, read from the term index, which serves keyword queries in place of a
    full-text index on the summaries (migrations/0109_summaries_hot_updates.sql)."""
    if not terms:
        return "SELECT NULL::bigint WHERE false"
    return " UNION ALL ".join(_term_rows(t, after, "k.ticket_id") for t in terms)


def _internal_note_matches(q: str) -> str:
    """The tickets one of whose internal notes matches the query text ``q`` (an SQL
    expression), through their own index (migrations/0107_internal_note_search.sql)."""
    return (
        "SELECT ticket_id FROM ticket_messages WHERE visibility = 'internal' "
        f"AND to_tsvector('english', body) @@ websearch_to_tsquery('english', {q})"
    )


def _with_internal_notes(
    f: TicketFilter,
    plan: KeywordPlan,
    *,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
) -> tuple[str, list[Any]]:
    """A keyword list that also matches internal notes: the public text's page (the
    keyword walk, unchanged) merged, newest first and without repeats, with the newest
    tickets one of whose notes matches. Each side reads the rows of the page and of every
    page it skips (``offset``), so the merge is exactly the first rows of both."""
    assert f.q is not None
    skip = offset or 0
    public = msgspec.structs.replace(f, internal_notes=False)
    sql, args = _list_sql(
        public,
        limit=limit + skip,
        cursor=cursor,
        offset=None if offset is None else 0,
        now=now,
        timezone=timezone,
        keyword=plan,
    )

    arg = _binder(args)

    base = _where(public, now, timezone, args, include_q=False)
    if offset is None and cursor:
        c_at, c_id = decode_cursor(cursor)
        base += f" AND (created_at, id) < ({arg(c_at)}, {arg(c_id)})"
    order = "ORDER BY created_at DESC, id DESC"
    notes = (
        f"SELECT {TICKET_COLUMNS} FROM ticket_summaries WHERE {base} "
        f"AND id IN ({_internal_note_matches(arg(f.q.strip()))}) {order} "
        f"LIMIT {arg(limit + skip + 1)}"
    )
    merged = (
        f"SELECT * FROM (({sql}) UNION ({notes})) u {order} "
        f"LIMIT {arg(limit + 1)} OFFSET {arg(skip)}"
    )
    return merged, args


def _list_sql(
    f: TicketFilter,
    *,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
    keyword: KeywordPlan | None = None,
) -> tuple[str, list[Any]]:
    """The list statement and its arguments. A full-text filter is served by
    ``_keyword_sql`` when ``keyword`` (its ``keyword_plan``) is given."""
    args: list[Any] = []
    if offset is not None and offset < 0:
        raise ValueError("offset must not be negative")
    if keyword is not None and f.q is not None and f.q.strip():
        planned = _keyword_sql(
            f, keyword, limit=limit, cursor=cursor, offset=offset, now=now, timezone=timezone
        )
        if planned is not None:
            return planned
    where = _where(f, now, timezone, args)
    if offset is None and cursor:
        c_at, c_id = decode_cursor(cursor)
        args.extend([c_at, c_id])
        where += f" AND (created_at, id) < (${len(args) - 1}, ${len(args)})"
    sql = (
        f"SELECT {TICKET_COLUMNS} FROM ticket_summaries WHERE {where} "
        "ORDER BY created_at DESC, id DESC"
    )
    args.append(limit + 1)
    sql += f" LIMIT ${len(args)}"
    if offset is not None:
        args.append(offset)
        sql += f" OFFSET ${len(args)}"
    return sql, args


# --- keyword search ---------------------------------------------------------------------
#
# ``ticket_search_terms`` holds one row per distinct lexeme of each ticket's ``search``
# vector, indexed so that one lexeme's rows read backwards are the tickets containing it,
# newest first (migrations/0105_search_terms.sql). A query's cover (projections.tsquery)
# names, per alternative, lexemes that every match contains; the walk takes the rarest of
# each, joins the summaries, keeps the rows that pass every filter and the full
# ``search @@ query`` check, and stops after one page: exactly the newest matches, after
# as many rows as it takes to find them, however the matches are spread over time.
#
# Only when a walk covers KEYWORD_WALK_WINDOW rows without filling the page (the other
# filters or the rest of the query reject nearly everything the lexeme matches) does the
# statement look further: at the newest KEYWORD_RECENT_WINDOW tickets that pass the other
# filters (their own index), then at every ticket holding the walked lexemes, sorted.
# A query without a cover (only negations, or an alternative that is one) matches most
# tickets: the plain filter, which reads the newest tickets first and checks each.
#
# The summaries have no full-text index (migrations/0109_summaries_hot_updates.sql): the
# term index finds every candidate, so that a reply, which extends ``search``, changes no
# indexed column of its summary row and the update can be HOT.

KEYWORD_WALK_WINDOW = 2000
KEYWORD_PICK_BOUND = 500  # rows counted per candidate lexeme when choosing the rarest
KEYWORD_RECENT_WINDOW = 2000
KEYWORD_PLAN_CACHE = 4096  # distinct query texts whose parse is kept per process
TERM_STATS_TTL_S = 300.0  # how long the lexeme frequencies from pg_stats are reused


class KeywordPlan(NamedTuple):
    """What ``websearch_to_tsquery('english', q)`` gives, and the walk it allows."""

    tsquery: str  # its text form; '' when q has only stop words (it then matches nothing)
    cover: Cover | None  # projections.tsquery.plan; () for the empty query
    exact: Cover | None  # projections.tsquery.exact: what answers a count alone


_plans: OrderedDict[str, KeywordPlan] = OrderedDict()
_term_stats: tuple[float, dict[str, float]] = (float("-inf"), {})


async def keyword_plan(runner: asyncpg.Pool | asyncpg.Connection, q: str) -> KeywordPlan:
    """The plan for full-text query ``q``: from a bounded in-process LRU, else one round
    trip (the parse depends only on the text and the fixed 'english' configuration)."""
    q = q.strip()
    found = _plans.get(q)
    if found is not None:
        _plans.move_to_end(q)
        return found
    text = await runner.fetchval("SELECT websearch_to_tsquery('english', $1)::text", q)
    text = text or ""
    plan = KeywordPlan(text, tsquery.plan(text), tsquery.exact(text))
    _plans[q] = plan
    while len(_plans) > KEYWORD_PLAN_CACHE:
        _plans.popitem(last=False)
    return plan


async def _order_candidates(runner: asyncpg.Pool | asyncpg.Connection, plan: KeywordPlan) -> None:
    """Refresh (at most every TERM_STATS_TTL_S) the lexeme frequencies that break ties
    between candidates: PostgreSQL's most-common-values statistics of the term index."""
    global _term_stats
    if plan.cover is None or all(len(g) < 2 for g in plan.cover):
        return
    loop_now = time.monotonic()
    if loop_now - _term_stats[0] < TERM_STATS_TTL_S:
        return
    row = await runner.fetchrow(
        "SELECT most_common_vals::text::text[] AS vals, most_common_freqs AS freqs "
        "FROM pg_stats WHERE schemaname = current_schema() "
        "AND tablename = 'ticket_search_terms' AND attname = 'term'"
    )
    freqs: dict[str, float] = {}
    if row is not None and row["vals"] is not None:
        freqs = dict(zip(row["vals"], row["freqs"], strict=False))
    _term_stats = (loop_now, freqs)


def _keyword_sql(
    f: TicketFilter,
    plan: KeywordPlan,
    *,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
) -> tuple[str, list[Any]] | None:
    """The keyword statement for ``plan`` (None: use the plain filter)."""
    if plan.cover is None:
        return None
    if plan.cover == ():
        # only stop words: ``search @@ ''`` is false for every row
        _where(f, now, timezone, [], include_q=False)  # the same errors as the plain filter
        if cursor and offset is None:
            decode_cursor(cursor)
        return f"SELECT {TICKET_COLUMNS} FROM ticket_summaries WHERE false", []
    return _walk_sql(
        f, plan.cover, limit=limit, cursor=cursor, offset=offset, now=now, timezone=timezone
    )


def _walk_sql(
    f: TicketFilter,
    cover: Cover,
    *,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
) -> tuple[str, list[Any]]:
    args: list[Any] = []

    arg = _binder(args)

    base = _where(f, now, timezone, args, include_q=False)
    assert f.q is not None
    match = f"search @@ websearch_to_tsquery('english', {arg(f.q.strip())})"
    after: tuple[str, str] | None = None
    summary_cursor = ""
    if cursor and offset is None:
        c_at, c_id = decode_cursor(cursor)
        after = (arg(c_at), arg(c_id))
        summary_cursor = f" AND (created_at, id) < ({after[0]}, {after[1]})"
    n = arg(limit + 1)
    skip = arg(offset or 0)
    window = arg(KEYWORD_WALK_WINDOW + (offset or 0))
    freqs = _term_stats[1]
    ctes: list[str] = []
    terms: list[str] = []
    for g, group in enumerate(cover):
        if len(group) == 1:
            # A sub-select hides the lexeme from the planner, so every plan is costed as
            # the generic one is and the prepared statement keeps a generic plan: costed
            # with the lexeme, a rare one looked cheaper, and PostgreSQL planned each
            # keyword list afresh (about 1 ms more per uncached list).
            terms.append(f"(SELECT {arg(group[0])}::text)")
            continue
        # the rarest candidate: a bounded count each, ties broken by the statistics
        ordered = sorted(group, key=lambda t: freqs.get(t, 0.0))
        ctes.append(
            f"pick{g} AS MATERIALIZED (SELECT u.t FROM unnest({arg(ordered)}::text[]) "
            "WITH ORDINALITY AS u(t, i) ORDER BY (SELECT count(*) FROM ("
            f"{_term_rows('u.t', after, '1')} LIMIT {arg(KEYWORD_PICK_BOUND)}) c), u.i LIMIT 1)"
        )
        terms.append(f"(SELECT t FROM pick{g})")
    columns = "k.walk_key AS w_key, k.created_at AS w_at, k.ticket_id AS w_id"
    walks = [
        f"{_term_rows(t, after, columns)} "
        "ORDER BY k.walk_key DESC, k.created_at DESC, k.ticket_id DESC LIMIT " + window
        for t in terms
    ]
    if len(walks) == 1:  # the index order: within one term, newest first
        walk = walks[0]
        distinct = ""
        walk_order = "w.w_key DESC, w.w_at DESC, w.w_id DESC"
    else:  # one walk per alternative, merged newest first; a ticket may come from several
        merged = " UNION ALL ".join(f"({w})" for w in walks)
        walk = f"SELECT w_at, w_id FROM ({merged}) m ORDER BY w_at DESC, w_id DESC LIMIT {window}"
        distinct = "DISTINCT ON (w.w_at, w.w_id) "
        walk_order = "w.w_at DESC, w.w_id DESC"
    order = "ORDER BY created_at DESC, id DESC"
    # On rows already found the query is a filter: kept away from the full-text index,
    # which the planner would otherwise intersect (fetching every match) with the others.
    check = f"({match}) IS TRUE"
    # Each stage looks at a bounded number of rows and either settles the page (it is
    # full, or the stage saw every candidate) or hands over to the next stage.
    stages: list[tuple[str, list[str]]] = [
        (
            "walked",
            [
                f"walked AS MATERIALIZED (SELECT {distinct}{TICKET_COLUMNS} FROM ({walk}) w "
                "JOIN ticket_summaries s ON s.id = w.w_id WHERE {pending} AND "
                f"{base} AND {check} ORDER BY {walk_order} LIMIT {n} OFFSET {skip})",
                # the page is complete, or the walk met every ticket holding its lexemes
                f"walked_done AS (SELECT (SELECT count(*) FROM walked) >= {n} "
                f"OR (SELECT count(*) FROM ({walk}) c) < {window} AS yes)",
            ],
        )
    ]
    if base != "TRUE":
        # The other filters reject most of the lexeme's tickets: walk theirs instead (the
        # newest ones, through the filters' own index), e.g. a customer's own tickets.
        recent = arg(KEYWORD_RECENT_WINDOW + (offset or 0))
        stage = (
            "recent",
            [
                f"recent_rows AS MATERIALIZED (SELECT {TICKET_COLUMNS}, search "
                f"FROM ticket_summaries WHERE {{pending}} AND {base}{summary_cursor} {order} "
                f"LIMIT {recent})",
                f"recent AS MATERIALIZED (SELECT {TICKET_COLUMNS} FROM recent_rows "
                f"WHERE {check} {order} LIMIT {n} OFFSET {skip})",
                f"recent_done AS (SELECT (SELECT count(*) FROM recent) >= {n} "
                f"OR (SELECT count(*) FROM recent_rows) < {recent} AS yes)",
            ],
        )
        # a customer's list (requester set) holds few tickets: look at those first
        stages.insert(0 if f.requester is not None else 1, stage)
    ctes_sql = list(ctes)
    branches: list[str] = []
    pending = "true"
    for name, stage_ctes in stages:
        ctes_sql += [c.replace("{pending}", pending) for c in stage_ctes]
        branches.append(
            f"SELECT {TICKET_COLUMNS} FROM {name} WHERE {pending} AND (SELECT yes FROM {name}_done)"
        )
        pending += f" AND NOT (SELECT yes FROM {name}_done)"
    branches.append(
        # every ticket holding the walked lexemes (and the indexes the planner prefers for
        # the other filters), checked, then a sort: every match. OFFSET 0 keeps the
        # planner from walking the created_at index for this branch.
        f"(SELECT {TICKET_COLUMNS} FROM (SELECT {TICKET_COLUMNS} FROM ticket_summaries "
        f"WHERE {base} AND id = ANY(ARRAY({_candidates(terms, after)})) AND {match}"
        f"{summary_cursor} OFFSET 0) g WHERE {pending} {order} LIMIT {n} OFFSET {skip})"
    )
    sql = f"WITH {', '.join(ctes_sql)} SELECT * FROM ({' UNION ALL '.join(branches)}) k {order}"
    return sql, args


def _term_rows(term: str, after: tuple[str, str] | None, columns: str) -> str:
    """The ``ticket_search_terms`` rows of lexeme ``term`` (an SQL expression) older than
    the cursor ``after``, through the walk index: the term's key range."""
    low = f"(hashtext({term})::bigint << 32)"
    sql = (
        f"SELECT {columns} FROM ticket_search_terms k WHERE k.walk_key >= {low} "
        f"AND k.walk_key <= ({low} | 4294967295) AND k.term = {term}"
    )
    if after is not None:
        key = term_key_sql(term, f"{after[0]}::timestamptz")
        sql += f" AND (k.walk_key, k.created_at, k.ticket_id) < ({key}, {after[0]}, {after[1]})"
    return sql


async def _plan_for(
    runner: asyncpg.Pool | asyncpg.Connection, f: TicketFilter
) -> KeywordPlan | None:
    if f.q is None or not f.q.strip():
        return None
    plan = await keyword_plan(runner, f.q)
    await _order_candidates(runner, plan)
    return plan


def _page(rows: list[TicketRow], limit: int) -> tuple[list[TicketRow], str | None]:
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = items[-1]
        next_cursor = encode_cursor(last.created_at, last.id)
    return items, next_cursor


async def list_tickets(
    pool: asyncpg.Pool,
    f: TicketFilter,
    *,
    limit: int,
    cursor: str | None = None,
    offset: int | None = None,
    now: datetime,
    timezone: str,
) -> tuple[list[TicketRow], str | None]:
    """Newest first (created_at DESC, id DESC); keyset ``cursor`` or, when given, ``offset``.

    Returns the page and the cursor of the next page (None on the last page).
    """
    limit = max(1, min(int(limit), MAX_LIMIT))
    sql, args = await _statement(pool, f, limit, cursor, offset, now, timezone)
    rows = await pool.fetch(sql, *args)
    return _page([_ticket(r) for r in rows], limit)


async def _statement(
    pool: asyncpg.Pool,
    f: TicketFilter,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
) -> tuple[str, list[Any]]:
    """The list statement for ``f`` (a keyword query's plan looked up first)."""
    plan = await _plan_for(pool, f)
    if plan is not None and f.internal_notes:
        return _with_internal_notes(
            f, plan, limit=limit, cursor=cursor, offset=offset, now=now, timezone=timezone
        )
    return _list_sql(
        f, limit=limit, cursor=cursor, offset=offset, now=now, timezone=timezone, keyword=plan
    )


async def list_tickets_consistent(
    pool: asyncpg.Pool,
    f: TicketFilter,
    *,
    limit: int,
    cursor: str | None = None,
    now: datetime,
    timezone: str,
    wait_ms: int,
) -> tuple[list[TicketRow], str | None, int | None]:
    """``list_tickets`` after the read-your-writes wait, in one round trip when the
    projections are current (``consistency.fetch_consistent``); also returns the lag in
    ms when the wait ran out (else None)."""
    page = await list_page_consistent(
        pool, f, limit=limit, cursor=cursor, now=now, timezone=timezone, wait_ms=wait_ms
    )
    return page.rows, page.next_cursor, page.lag


class Page(NamedTuple):
    """One page of a list, with what it was read at (``consistency.fetch_versioned``)."""

    rows: list[TicketRow]
    next_cursor: str | None
    lag: int | None  # ms still behind after the read-your-writes wait; None when current
    version: ReadModelVersion | None  # the read models' version, when current
    unchanged: bool  # the read models are still at ``known``: rows were not read again


async def list_page_consistent(
    pool: asyncpg.Pool,
    f: TicketFilter,
    *,
    limit: int,
    cursor: str | None = None,
    now: datetime,
    timezone: str,
    wait_ms: int,
    known: ReadModelVersion | None = None,
    probe: VersionProbe | None = None,
) -> Page:
    """``list_tickets_consistent`` for callers that keep pages: the page comes with the
    read models' version it was read at, and when the read models are current and still at
    ``known`` it returns at once with ``unchanged`` set and no rows.

    With a ``probe`` (shared version checks), a current read model is read with the plain
    list statement after the check: its snapshot is newer than the check's, so it holds
    every write committed before the call, and the page is tagged with the version the
    check saw (perhaps older than its rows, which only makes a kept page look stale sooner).
    The check then costs a share of one constant statement, and the list none of the
    read-your-writes wrapping, which made PostgreSQL plan and run a list about three times
    as long. Behind, or without a probe, one statement checks and reads (and waits)."""
    from projections.consistency import FRESH_PREFIX, fetch_versioned, unchanged_since

    current: ReadModelVersion | None = None
    if probe is not None:
        current = await probe.version(pool)
        if current is not None and current == known:
            return Page([], None, None, known, True)  # before the keyword plan's round trips
    elif known is not None and await unchanged_since(pool, known):
        return Page([], None, None, known, True)
    limit = max(1, min(int(limit), MAX_LIMIT))
    sql, args = await _statement(pool, f, limit, cursor, None, now, timezone)
    if current is not None:
        items, next_cursor = _page([_ticket(r) for r in await pool.fetch(sql, *args)], limit)
        return Page(items, next_cursor, None, current, False)
    found = await fetch_versioned(pool, sql, args, wait_ms)
    items, next_cursor = _page([TicketRow(*r[FRESH_PREFIX:]) for r in found.rows], limit)
    return Page(items, next_cursor, found.lag, found.version, found.unchanged)


async def count_tickets(
    pool: asyncpg.Pool, f: TicketFilter, *, now: datetime, timezone: str
) -> int:
    plan = await _plan_for(pool, f)
    args: list[Any] = []
    if plan is not None and plan.exact:
        sql = _exact_count_sql(f, plan.exact, now, timezone, args)
    else:
        where = _where(f, now, timezone, args, cover=None if plan is None else plan.cover)
        sql = f"SELECT count(*) FROM ticket_summaries WHERE {where}"
    return int(await pool.fetchval(sql, *args))


def _exact_count_sql(
    f: TicketFilter, groups: Cover, now: datetime, timezone: str, args: list[Any]
) -> str:
    """The count of a query that the term index answers alone (``tsquery.exact``: a
    ticket matches when it holds every lexeme of one group): no vector is read, and
    without other filters no summary either (a word in 5% of 320,000 tickets: about 30
    ms, against 50 with a full-text index and over 100 checking each candidate's vector)."""
    assert f.q is not None
    base = _where(f, now, timezone, args, include_q=False)

    arg = _binder(args)

    sets = [
        " INTERSECT ".join(_term_rows(f"{arg(t)}::text", None, "k.ticket_id") for t in group)
        for group in groups
    ]
    if f.internal_notes:
        sets.append(_internal_note_matches(arg(f.q.strip())))
    found = sets[0] if len(sets) == 1 else " UNION ".join(f"({x})" for x in sets)
    if base == "TRUE":  # every ticket of the term index has its summary
        return f"SELECT count(*) FROM ({found}) m"
    return f"SELECT count(*) FROM ticket_summaries WHERE {base} AND id IN ({found})"


async def get_ticket_row(pool: asyncpg.Pool, ticket_id: int) -> TicketRow | None:
    row = await pool.fetchrow(
        f"SELECT {TICKET_COLUMNS} FROM ticket_summaries WHERE id = $1", ticket_id
    )
    return None if row is None else _ticket(row)


# --- logs -------------------------------------------------------------------------------


def _log_where(
    ticket_id: int | None, requester: str | None, public_only: bool, args: list[Any]
) -> str:
    clauses: list[str] = []
    if ticket_id is not None:
        args.append(ticket_id)
        clauses.append(f"ticket_id = ${len(args)}")
    if requester is not None:
        args.append(requester)
        clauses.append(f"requester_id = ${len(args)}")
    if public_only:
        clauses.append("visibility = 'public'")
    return " AND ".join(clauses) if clauses else "TRUE"


async def list_logs(
    pool: asyncpg.Pool,
    *,
    ticket_id: int | None = None,
    requester: str | None = None,
    limit: int,
    offset: int = 0,
    public_only: bool = False,
) -> list[LogRow]:
    """Log rows by global position. ``requester`` keeps only tickets that requester
    raised; ``public_only`` hides internal-note entries (for customers)."""
    if offset < 0:
        raise ValueError("offset must not be negative")
    args: list[Any] = []
    where = _log_where(ticket_id, requester, public_only, args)
    args.extend([max(1, min(int(limit), MAX_LIMIT)), offset])
    rows = await pool.fetch(
        f"SELECT {LOG_COLUMNS} FROM ticket_logs WHERE {where} "
        f"ORDER BY position LIMIT ${len(args) - 1} OFFSET ${len(args)}",
        *args,
    )
    return [LogRow(*r.values()) for r in rows]


async def count_logs(
    pool: asyncpg.Pool,
    *,
    ticket_id: int | None = None,
    requester: str | None = None,
    public_only: bool = False,
) -> int:
    args: list[Any] = []
    where = _log_where(ticket_id, requester, public_only, args)
    return int(await pool.fetchval(f"SELECT count(*) FROM ticket_logs WHERE {where}", *args))


async def last_actors(
    pool: asyncpg.Pool, ticket_ids: Sequence[int], *, public_only: bool = False
) -> dict[int, str]:
    """The actor of each ticket's latest log entry (``public_only``: its latest entry a
    customer may see, so an internal note does not show who wrote it)."""
    if not ticket_ids:
        return {}
    visible = " AND l.visibility = 'public'" if public_only else ""
    rows = await pool.fetch(
        "SELECT t.id, l.actor_id FROM unnest($1::bigint[]) AS t(id) "
        "CROSS JOIN LATERAL (SELECT l.actor_id FROM ticket_logs l "
        f"WHERE l.ticket_id = t.id{visible} ORDER BY l.position DESC LIMIT 1) l",
        list(ticket_ids),
    )
    return {r[0]: r[1] for r in rows}


# --- reference counts -------------------------------------------------------------------


async def category_counts(pool: asyncpg.Pool) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for r in await pool.fetch("SELECT category_id, status, count FROM category_counts"):
        out.setdefault(r["category_id"], {})[r["status"]] = r["count"]
    return out


async def agent_counts(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for r in await pool.fetch("SELECT assignee, status, count FROM agent_counts"):
        out.setdefault(r["assignee"], {})[r["status"]] = r["count"]
    return out
