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
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from domain.events import PRIORITIES, STATUSES
from domain.sla import end_of_local_day

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


def _where(
    f: TicketFilter, now: datetime, timezone: str, args: list[Any], *, include_q: bool = True
) -> str:
    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

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
            clauses.append(
                f"{unresolved} AND resolution_due_at < {arg(end_of_local_day(now, timezone))}"
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
        clauses.append(f"search @@ websearch_to_tsquery('english', {arg(f.q.strip())})")
    if f.created_from is not None:
        clauses.append(f"created_at >= {arg(f.created_from)}")
    if f.created_to is not None:
        clauses.append(f"created_at <= {arg(f.created_to)}")
    return " AND ".join(clauses) if clauses else "TRUE"


def _list_sql(
    f: TicketFilter,
    *,
    limit: int,
    cursor: str | None,
    offset: int | None,
    now: datetime,
    timezone: str,
) -> tuple[str, list[Any]]:
    args: list[Any] = []
    if offset is None and f.q is not None and f.q.strip():
        return _keyword_sql(f, limit=limit, cursor=cursor, now=now, timezone=timezone)
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
        if offset < 0:
            raise ValueError("offset must not be negative")
        args.append(offset)
        sql += f" OFFSET ${len(args)}"
    return sql, args


# How many of the newest (otherwise filtered) tickets a keyword search checks before it
# turns to the full-text index. Walking newest-first is fastest for common words, but a
# word absent from recent tickets would walk the whole table; the GIN index is fastest
# for rare words, but slow for common ones (it fetches every match, then sorts).
KEYWORD_RECENT_WINDOW = 2000


def _keyword_sql(
    f: TicketFilter, *, limit: int, cursor: str | None, now: datetime, timezone: str
) -> tuple[str, list[Any]]:
    """One statement, two plans: the matches among the newest tickets when they fill the
    page (they are then exactly the newest matches), else the full-text index."""
    args: list[Any] = []
    base = _where(f, now, timezone, args, include_q=False)
    assert f.q is not None
    args.append(f.q.strip())
    match = f"search @@ websearch_to_tsquery('english', ${len(args)})"
    if cursor:
        c_at, c_id = decode_cursor(cursor)
        args.extend([c_at, c_id])
        base += f" AND (created_at, id) < (${len(args) - 1}, ${len(args)})"
    args.append(limit + 1)
    n = f"${len(args)}"
    args.append(KEYWORD_RECENT_WINDOW)
    window = f"${len(args)}"
    order = "ORDER BY created_at DESC, id DESC"
    sql = (
        f"WITH recent AS (SELECT {TICKET_COLUMNS} FROM ("
        f"SELECT {TICKET_COLUMNS}, search FROM ticket_summaries WHERE {base} {order} "
        f"LIMIT {window}) w WHERE {match} {order} LIMIT {n}), "
        f"enough AS (SELECT count(*) >= {n} AS yes FROM recent) "
        f"SELECT * FROM (SELECT {TICKET_COLUMNS} FROM recent WHERE (SELECT yes FROM enough) "
        f"UNION ALL SELECT {TICKET_COLUMNS} FROM ("
        # OFFSET 0 keeps the planner from walking the created_at index for this branch.
        f"SELECT {TICKET_COLUMNS} FROM ticket_summaries WHERE {base} AND {match} OFFSET 0) g "
        f"WHERE NOT (SELECT yes FROM enough) {order} LIMIT {n}) k {order}"
    )
    return sql, args


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
    sql, args = _list_sql(f, limit=limit, cursor=cursor, offset=offset, now=now, timezone=timezone)
    rows = await pool.fetch(sql, *args)
    return _page([_ticket(r) for r in rows], limit)


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
    from projections.consistency import FRESH_PREFIX, fetch_consistent

    limit = max(1, min(int(limit), MAX_LIMIT))
    sql, args = _list_sql(f, limit=limit, cursor=cursor, offset=None, now=now, timezone=timezone)
    rows, lag = await fetch_consistent(pool, sql, args, wait_ms)
    items, next_cursor = _page([TicketRow(*r[FRESH_PREFIX:]) for r in rows], limit)
    return items, next_cursor, lag


async def count_tickets(
    pool: asyncpg.Pool, f: TicketFilter, *, now: datetime, timezone: str
) -> int:
    args: list[Any] = []
    where = _where(f, now, timezone, args)
    n = await pool.fetchval(f"SELECT count(*) FROM ticket_summaries WHERE {where}", *args)
    return int(n)


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
