"""Auditor routes under /v1/audit: the global event feed, a ticket's raw events, as-of state.

Only auditors and admins: the app-wide policy (services.api.auth) already says so; the
router's own guard repeats it so this surface stays closed even if mounted elsewhere.
Everything here reads the event log itself (never a projection), so it is never stale.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, QueryParameter

from domain.errors import InvalidInput, TicketNotFound
from domain.events import EVENT_TYPES, Actor
from services import audit
from services.api.auth import allow
from services.api.deps import commands_of, in_utc, one_value_each, pool_of
from services.api.errors import Denied, Unauthenticated
from services.api.native import (
    READ_ERRORS,
    TICKET_READ_ERRORS,
    TicketOut,
    etag,
    problem_documented,
    ticket_out,
)

AUDIT_ROLES = ("auditor", "admin")
MAX_ID = 2**63 - 1  # ids and positions are bigint: a larger one is bad input, not a 500
MAX_VERSION = 2**31 - 1  # stream versions are int


def auditors_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    user = connection.scope.get("user")
    if not isinstance(user, Actor):
        raise Unauthenticated("authentication required")
    if user.role not in AUDIT_ROLES:
        raise Denied("the audit API is for auditors and admins only")


class TicketEvents(msgspec.Struct):
    items: list[audit.AuditEvent]
    next_cursor: str | None = None


def _time(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    text = value.strip()
    if not text:  # not "no filter": a moment left out by mistake
        raise InvalidInput(f"{field} is empty: give an ISO 8601 time or leave it out", field=field)
    candidates = [text]
    if " " in text:  # an unencoded "+02:00" arrives as " 02:00"
        head, _, tail = text.rpartition(" ")
        candidates.append(f"{head}+{tail}")
    for candidate in candidates:
        try:
            parsed = datetime.fromisoformat(candidate)
            break
        except ValueError:
            continue
    else:
        raise InvalidInput(
            f"{field} must be an ISO 8601 time with a zone, e.g. 2024-05-01T12:00:00Z",
            field=field,
        )
    if parsed.tzinfo is None:
        raise InvalidInput(
            f"{field} needs a time zone (Z or +hh:mm), e.g. 2024-05-01T12:00:00Z", field=field
        )
    return in_utc(parsed, field)


def _types(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    names = [t.strip() for v in values for t in v.split(",") if t.strip()]
    unknown = sorted(set(names) - set(EVENT_TYPES))
    if unknown:
        raise InvalidInput(
            f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
            field="type",
        )
    return names or None


def _ticket_id(ticket_id: int) -> int:
    if not 1 <= ticket_id <= MAX_ID:
        raise TicketNotFound(f"ticket {ticket_id} not found")
    return ticket_id


@get(
    "/events",
    summary="The global event feed in commit-safe order, with a cursor",
    description=(
        "Events after position `after` (0 to start) in commit order: a transaction that "
        "commits late is never skipped. Pass `next_cursor` back as `after` for the next "
        f"page; when nothing new has committed it stays the same. `limit` is capped at "
        f"{audit.FEED_MAX_LIMIT}. Filters: `type` (repeat or comma-separate event names), "
        "`since`/`until` on recorded-at (ISO 8601 with a zone; since inclusive, until "
        "exclusive). `data` and `metadata` are the stored JSON; hashes are hex."
    ),
    responses=READ_ERRORS,
)
async def audit_feed(
    request: Request[Any, Any, Any],
    after: Annotated[
        int, QueryParameter(ge=0, le=MAX_ID, description="a position from a previous page")
    ] = 0,
    limit: Annotated[int, QueryParameter(ge=1, le=MAX_ID, description="page size")] = 100,
    event_type: Annotated[
        list[str] | None, QueryParameter(name="type", description="event type names")
    ] = None,
    since: Annotated[str | None, QueryParameter(description="recorded at or after")] = None,
    until: Annotated[str | None, QueryParameter(description="recorded before")] = None,
) -> audit.FeedPage:
    pool = pool_of(request)
    one_value_each(request, ("after", "limit", "since", "until"))
    return await audit.feed(
        pool,
        after=after,
        limit=min(limit, audit.FEED_MAX_LIMIT),
        types=_types(event_type),
        since=_time(since, "since"),
        until=_time(until, "until"),
    )


@get(
    "/tickets/{ticket_id:int}/events",
    summary="Every event of a ticket with metadata and hashes",
    responses=TICKET_READ_ERRORS,
)
async def ticket_events(ticket_id: FromPath[int], request: Request[Any, Any, Any]) -> TicketEvents:
    items = await audit.raw_ticket_events(pool_of(request), _ticket_id(ticket_id))
    return TicketEvents(items=items)


@get(
    "/tickets/{ticket_id:int}/state",
    summary="The ticket as it was at a moment or a version, folded from its events",
    description=(
        "`as_of` (ISO 8601 with a zone) gives the state after the last event recorded at "
        "or before it; `version=N` the state after the N-th event; neither, the state now. "
        "Before the ticket existed, or past its last version: 404."
    ),
    responses=TICKET_READ_ERRORS,
)
async def ticket_state(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    as_of: Annotated[str | None, QueryParameter(description="ISO 8601 moment")] = None,
    version: Annotated[
        int | None, QueryParameter(ge=1, le=MAX_VERSION, description="stream version, from 1")
    ] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    viewer = request.scope["user"]
    one_value_each(request, ("as_of", "version"))
    ticket = await audit.state_as_of(
        commands, _ticket_id(ticket_id), as_of=_time(as_of, "as_of"), version=version
    )
    return Response(ticket_out(ticket, viewer), headers={"ETag": etag(ticket.version)})


router = Router(
    path="/v1/audit",
    route_handlers=problem_documented([audit_feed, ticket_events, ticket_state]),
    guards=[auditors_only],
    opt=allow(*AUDIT_ROLES),
    tags=["audit"],
)
