"""The native /v1 API (SPEC section 7): snake_case JSON, problem+json errors.

Single-ticket reads fold the stream (always fresh); lists and logs come from the
projections after the read-your-writes wait. Commands take ``If-Match`` (412 when
stale) and ``Idempotency-Key`` (a repeat returns the first response, appending
nothing). Raising answers 201 with ``Location``; a message answers 201 with the
ticket; the other commands answer 200 with the ticket. Every ticket response carries
``ETag: "<version>"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.enums import MediaType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, Parameter

from domain import ticket as domain
from domain.errors import Forbidden, InvalidInput, TicketNotFound
from domain.events import Actor, BodyType, Priority, Status, Visibility
from projections.queries import TicketRow
from services import categories as cats
from services import idempotency as idempotency_store
from services.api.auth import allow
from services.api.deps import (
    Idempotency,
    canonical_body,
    command_context,
    commands_of,
    consistent,
    idempotency_of,
    in_utc,
    one_value_each,
    pool_of,
    request_body,
    settings_of,
)
from services.api.errors import PROBLEM_JSON, Problem
from services.api.middleware import set_projection_lag
from services.api.pagecache import PageCache
from services.commands import CommandResult, CommandService
from services.idempotency import KeyTaken

MAX_PAGE = 100
_json = msgspec.json.Encoder()
MAX_ID = 2**63 - 1

# --- response shapes ---------------------------------------------------------------------


class ActorOut(msgspec.Struct):
    id: str
    role: str
    name: str | None


class MessageOut(msgspec.Struct):
    id: int
    author: ActorOut
    body: str
    body_type: str
    visibility: str
    attachments: list[str]
    created_at: datetime


class TicketOut(msgspec.Struct):
    id: int
    subject: str
    description: str
    status: str
    priority: str
    category_id: int
    requester: ActorOut
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
    rating_comment: str | None
    resolution: str | None
    resolved_at: datetime | None
    closed_at: datetime | None
    attachments: list[str]
    messages: list[MessageOut]


class TicketSummaryOut(msgspec.Struct):
    id: int
    subject: str
    status: str
    priority: str
    category_id: int
    requester: ActorOut
    assignee: str | None
    created_at: datetime
    updated_at: datetime
    version: int
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    first_response_breached: bool
    resolution_breached: bool
    sla_paused: bool
    rating: int | None
    message_count: int
    last_activity_at: datetime
    resolved_at: datetime | None
    closed_at: datetime | None


class TicketPage(msgspec.Struct):
    items: list[TicketSummaryOut]
    next_cursor: str | None


def summary_out(r: TicketRow, *, customer: bool) -> TicketSummaryOut:
    """A list item from its read-model row (customers count public messages only)."""
    return TicketSummaryOut(
        id=r.id,
        subject=r.subject,
        status=r.status,
        priority=r.priority,
        category_id=r.category_id,
        requester=ActorOut(id=r.requester_id, role=r.requester_role, name=r.requester_name),
        assignee=r.assignee,
        created_at=r.created_at,
        updated_at=r.updated_at,
        version=r.version,
        first_response_due_at=r.first_response_due_at,
        resolution_due_at=r.resolution_due_at,
        first_response_breached=r.first_response_breached,
        resolution_breached=r.resolution_breached,
        sla_paused=r.sla_paused,
        rating=r.rating,
        message_count=r.public_message_count if customer else r.message_count,
        last_activity_at=r.last_activity_at,
        resolved_at=r.resolved_at,
        closed_at=r.closed_at,
    )


class LogOut(msgspec.Struct):
    position: int
    ticket_id: int
    action: str
    action_text: str
    actor: ActorOut
    at: datetime


class LogPage(msgspec.Struct):
    items: list[LogOut]
    next_cursor: str | None


class CategoryOut(msgspec.Struct):
    id: int
    name: str
    description: str | None
    parent_id: int | None


class CategoryPage(msgspec.Struct):
    items: list[CategoryOut]
    next_cursor: str | None


# --- request shapes ----------------------------------------------------------------------

Subject = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
LongText = Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
ShortText = Annotated[str, msgspec.Meta(max_length=2_000)]
AttachmentIds = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=100)]], msgspec.Meta(max_length=20)
]
Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


class RequesterIn(msgspec.Struct, forbid_unknown_fields=True):
    """For agents and admins raising a ticket on a customer's behalf."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    name: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class RaiseIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: Subject
    description: LongText
    category_id: Id
    priority: Priority | None = None
    attachments: AttachmentIds = []
    requester: RequesterIn | None = None


class MessageIn(msgspec.Struct, forbid_unknown_fields=True):
    body: LongText
    body_type: BodyType = "plain"
    visibility: Visibility = "public"
    attachments: AttachmentIds = []


class AssignIn(msgspec.Struct, forbid_unknown_fields=True):
    assignee: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class StatusIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Status
    reason: ShortText | None = None


class PriorityIn(msgspec.Struct, forbid_unknown_fields=True):
    priority: Priority


class CloseIn(msgspec.Struct, forbid_unknown_fields=True):
    resolution: Annotated[str, msgspec.Meta(max_length=20_000)] | None = None


class ReopenIn(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=2_000)]


class RatingIn(msgspec.Struct, forbid_unknown_fields=True):
    rating: Annotated[int, msgspec.Meta(ge=1, le=5)]
    comment: ShortText | None = None


class CategoryIn(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    description: Annotated[str, msgspec.Meta(max_length=2_000)] | None = None
    parent_id: Id | None = None


# --- documented errors -------------------------------------------------------------------


def _problem(description: str) -> ResponseSpec:
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type=PROBLEM_JSON,
        generate_examples=False,
    )


_COMMON = {
    401: _problem("No or bad credentials"),
    403: _problem("Authenticated but not allowed"),
    413: _problem("Request body too large"),
    422: _problem("Malformed or invalid input (with field errors)"),
    429: _problem("Rate limit exceeded (see Retry-After)"),
}
READ_ERRORS = {k: v for k, v in _COMMON.items() if k != 413}
TICKET_READ_ERRORS = {**READ_ERRORS, 404: _problem("No such ticket")}
COMMAND_ERRORS = {
    **_COMMON,
    404: _problem("No such ticket"),
    409: _problem("Not allowed in the ticket's current state"),
    412: _problem("If-Match names a stale version"),
}
IF_MATCH = HeaderParameter(
    name="If-Match",
    required=False,
    description='The ticket version the change is based on, as its ETag: "3"',
)
IDEMPOTENCY_KEY = HeaderParameter(
    name="Idempotency-Key",
    required=False,
    max_length=200,
    description="Repeat-safe key: the same key and body within 24 h returns the first response",
)

# --- rendering ---------------------------------------------------------------------------


def _actor(a: Actor) -> ActorOut:
    return ActorOut(id=a.id, role=a.role, name=a.name)


def ticket_out(t: domain.Ticket, viewer: Actor) -> TicketOut:
    clock = t.sla
    return TicketOut(
        id=t.id,
        subject=t.subject,
        description=t.description,
        status=t.status,
        priority=t.priority,
        category_id=t.category_id,
        requester=_actor(t.requester),
        assignee=t.assignee,
        created_at=t.created_at,
        updated_at=t.updated_at,
        version=t.version,
        first_response_due_at=clock.first_response_due_at,
        resolution_due_at=clock.resolution_due_at,
        first_response_at=clock.first_response_at,
        sla_paused=clock.paused,
        first_response_breached=clock.breached_first_response,
        resolution_breached=clock.breached_resolution,
        rating=t.rating,
        rating_comment=t.rating_comment,
        resolution=t.resolution,
        resolved_at=t.resolved_at,
        closed_at=t.closed_at,
        attachments=list(t.attachments),
        messages=[
            MessageOut(
                id=m.id,
                author=_actor(m.author),
                body=m.body,
                body_type=m.body_type,
                visibility=m.visibility,
                attachments=list(m.attachments),
                created_at=m.created_at,
            )
            for m in t.visible_messages(viewer)
        ],
    )


def etag(version: int) -> str:
    return f'"{version}"'


def _ticket_response(
    t: domain.Ticket, viewer: Actor, status: int = 200, *, replayed: bool = False
) -> Response[TicketOut]:
    headers = {"ETag": etag(t.version)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if status == 201:
        headers["Location"] = f"/v1/tickets/{t.id}"
    return Response(ticket_out(t, viewer), status_code=status, headers=headers)


def _result(result: CommandResult, viewer: Actor, status: int = 200) -> Response[TicketOut]:
    return _ticket_response(result.ticket, viewer, status, replayed=result.replayed)


def _check_id(ticket_id: int) -> int:
    if not 1 <= ticket_id <= MAX_ID:
        raise TicketNotFound(f"ticket {ticket_id} not found")
    return ticket_id


async def load_visible(commands: CommandService, ticket_id: int, actor: Actor) -> domain.Ticket:
    """The ticket folded from its events: 404 if unknown, 403 if not the caller's."""
    ticket = await commands.load_ticket(_check_id(ticket_id))
    if ticket is None:
        raise TicketNotFound(f"ticket {ticket_id} not found")
    if not domain.can_read(ticket, actor):
        raise Forbidden("customers may see only tickets they requested")
    return ticket


def _user(request: Request[Any, Any, Any]) -> Actor:
    user = request.scope.get("user")
    assert isinstance(user, Actor)  # the auth middleware guarantees it
    return user


# --- tickets -----------------------------------------------------------------------------


@post(
    "/tickets",
    status_code=201,
    summary="Raise a ticket",
    responses={**_COMMON, 409: _problem("Conflict")},
)
async def raise_ticket(
    request: Request[Any, Any, Any],
    data: JSONBody[RaiseIn],
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    ctx = command_context(request, actor, "native")
    requester = None
    if data.requester is not None:
        requester = Actor(id=data.requester.id, role="customer", name=data.requester.name)
    result = await commands.raise_ticket(
        ctx,
        subject=data.subject,
        description=data.description,
        category_id=data.category_id,
        priority=data.priority,
        attachments=data.attachments,
        requester=requester,
    )
    return _result(result, actor, 201)


ListStatus = Literal[
    "open",
    "in_progress",
    "on_hold",
    "resolved",
    "closed",
    "unresolved",
    "unassigned",
    "overdue",
    "duetoday",
]


LIST_FILTERS = (
    "status",
    "priority",
    "assignee",
    "requester",
    "category",
    "q",
    "created_from",
    "created_to",
    "cursor",
    "limit",
)


@get("/tickets", summary="List and search tickets", responses=READ_ERRORS)
async def list_tickets(
    request: Request[Any, Any, Any],
    status: FromQuery[ListStatus | None] = None,
    priority: FromQuery[Priority | None] = None,
    # an empty filter value is a mistake, not "match the empty id": refused (422)
    assignee: Annotated[str | None, Parameter(min_length=1, max_length=200)] = None,
    requester: Annotated[str | None, Parameter(min_length=1, max_length=200)] = None,
    category: Annotated[int | None, Parameter(ge=1, le=MAX_ID)] = None,
    q: Annotated[str | None, Parameter(max_length=500, description="full-text search")] = None,
    created_from: FromQuery[datetime | None] = None,
    created_to: FromQuery[datetime | None] = None,
    cursor: Annotated[str | None, Parameter(min_length=1, max_length=200)] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = 25,
) -> Response[TicketPage]:
    pool = pool_of(request)
    settings = settings_of(request)
    from projections import queries

    actor = _user(request)
    one_value_each(request, LIST_FILTERS)
    if actor.role == "customer":
        if requester is not None and requester != actor.id:
            raise Forbidden("customers may list only their own tickets")
        requester = actor.id
    if q is not None and domain_text_has_control(q):
        raise InvalidInput("q contains control characters", field="q")
    if q is not None and not q.strip():
        raise InvalidInput("q is empty: give words to search for, or leave q out", field="q")
    f = queries.TicketFilter(
        status=status,
        priority=priority,
        assignee=assignee,
        requester=requester,
        category_id=category,
        q=q,
        created_from=_utc(created_from, "created_from"),
        created_to=_utc(created_to, "created_to"),
        internal_notes=domain.can_see_internal(actor),
    )
    customer = actor.role == "customer"
    cache: PageCache = request.app.state.page_cache
    # Filters on "now" (overdue, duetoday) change without any event: never kept.
    key = None
    if status not in ("overdue", "duetoday") and not _wants_fresh(request):
        key = (customer, f, cursor, limit)
    kept = cache.get(key) if key is not None else None
    try:
        page = await queries.list_page_consistent(
            pool,
            f,
            limit=limit,
            cursor=cursor,
            now=datetime.now(UTC),
            timezone=settings.timezone,
            wait_ms=settings.consistency_wait_ms,
            known=kept.version if kept is not None else None,
            probe=cache.probe,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc), field="cursor" if "cursor" in str(exc) else "status") from None
    if page.lag:
        set_projection_lag(request.scope, page.lag)
    if page.unchanged and kept is not None:
        cache.record(hit=True)
        return _json_bytes(kept.body)
    body = _json.encode(
        TicketPage(
            items=[summary_out(r, customer=customer) for r in page.rows],
            next_cursor=page.next_cursor,
        )
    )
    if key is not None:
        cache.record(hit=False)
        if page.version is not None:
            cache.put(key, page.version, body)
    return _json_bytes(body)


def _json_bytes(body: bytes) -> Response[TicketPage]:
    """An encoded TicketPage, sent as it is (Litestar passes bytes content through)."""
    return Response(content=body, media_type=MediaType.JSON)  # type: ignore[arg-type]


def _wants_fresh(request: Request[Any, Any, Any]) -> bool:
    """Cache-Control: no-cache (or max-age=0) skips the kept pages."""
    directives = request.headers.get("cache-control", "").lower()
    return "no-cache" in directives or "max-age=0" in directives


def domain_text_has_control(value: str) -> bool:
    return any((ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) <= 0x9F for c in value)


def _utc(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return in_utc(value, field)


@get("/tickets/{ticket_id:int}", summary="A ticket with its messages", responses=TICKET_READ_ERRORS)
async def get_ticket(
    request: Request[Any, Any, Any], ticket_id: FromPath[int]
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    ticket = await load_visible(commands, ticket_id, actor)
    return _ticket_response(ticket, actor)


@post(
    "/tickets/{ticket_id:int}/messages",
    status_code=201,
    summary="Post a message (internal notes: agents and admins)",
    responses=COMMAND_ERRORS,
)
async def post_message(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[MessageIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.post_message(
        command_context(request, actor, "native"),
        _check_id(ticket_id),
        body=data.body,
        body_type=data.body_type,
        visibility=data.visibility,
        attachments=data.attachments,
    )
    return _result(result, actor, 201)


@post(
    "/tickets/{ticket_id:int}/assign",
    status_code=200,
    summary="Assign (agents, admins)",
    responses=COMMAND_ERRORS,
)
async def assign(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[AssignIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.assign(
        command_context(request, actor, "native"), _check_id(ticket_id), assignee=data.assignee
    )
    return _result(result, actor)


@post(
    "/tickets/{ticket_id:int}/status",
    status_code=200,
    summary="Change status (agents, admins)",
    responses=COMMAND_ERRORS,
)
async def change_status(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[StatusIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.change_status(
        command_context(request, actor, "native"),
        _check_id(ticket_id),
        status=data.status,
        reason=data.reason,
    )
    return _result(result, actor)


@post(
    "/tickets/{ticket_id:int}/priority",
    status_code=200,
    summary="Change priority and SLA targets (agents, admins)",
    responses=COMMAND_ERRORS,
)
async def change_priority(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[PriorityIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.change_priority(
        command_context(request, actor, "native"), _check_id(ticket_id), priority=data.priority
    )
    return _result(result, actor)


@post(
    "/tickets/{ticket_id:int}/close",
    status_code=200,
    summary="Close (requester or staff)",
    responses=COMMAND_ERRORS,
)
async def close(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[CloseIn | None] = None,
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.close(
        command_context(request, actor, "native"),
        _check_id(ticket_id),
        resolution=data.resolution if data is not None else None,
    )
    return _result(result, actor)


@post(
    "/tickets/{ticket_id:int}/reopen",
    status_code=200,
    summary="Reopen a resolved or closed ticket (requester or staff)",
    responses=COMMAND_ERRORS,
)
async def reopen(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[ReopenIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.reopen(
        command_context(request, actor, "native"), _check_id(ticket_id), reason=data.reason
    )
    return _result(result, actor)


@post(
    "/tickets/{ticket_id:int}/rating",
    status_code=200,
    summary="Rate a resolved or closed ticket (requester only)",
    responses=COMMAND_ERRORS,
)
async def rate(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    data: JSONBody[RatingIn],
    if_match: Annotated[str | None, IF_MATCH] = None,
    idempotency_key: Annotated[str | None, IDEMPOTENCY_KEY] = None,
) -> Response[TicketOut]:
    commands = commands_of(request)
    actor = _user(request)
    result = await commands.rate(
        command_context(request, actor, "native"),
        _check_id(ticket_id),
        rating=data.rating,
        comment=data.comment,
    )
    return _result(result, actor)


@get(
    "/tickets/{ticket_id:int}/log",
    summary="The ticket's log (one entry per event)",
    responses=TICKET_READ_ERRORS,
)
async def ticket_log(
    request: Request[Any, Any, Any],
    ticket_id: FromPath[int],
    cursor: Annotated[str | None, Parameter(max_length=20, pattern=r"^[0-9]{1,9}$")] = None,
    limit: Annotated[int, Parameter(ge=1, le=MAX_PAGE)] = MAX_PAGE,
) -> LogPage:
    commands = commands_of(request)
    pool = pool_of(request)
    from projections import queries

    actor = _user(request)
    await load_visible(commands, ticket_id, actor)
    offset = int(cursor) if cursor else 0
    await consistent(request)
    rows = await queries.list_logs(
        pool,
        ticket_id=ticket_id,
        limit=limit + 1,
        offset=offset,
        public_only=not domain.can_see_internal(actor),
    )
    more = len(rows) > limit
    return LogPage(
        items=[
            LogOut(
                position=r.position,
                ticket_id=r.ticket_id,
                action=r.action,
                action_text=r.action_text,
                actor=ActorOut(id=r.actor_id, role=r.actor_role, name=r.actor_name),
                at=r.at,
            )
            for r in rows[:limit]
        ],
        next_cursor=str(offset + limit) if more else None,
    )


# --- categories --------------------------------------------------------------------------


def _category(c: cats.Category) -> CategoryOut:
    return CategoryOut(id=c.id, name=c.name, description=c.description, parent_id=c.parent_id)


@get("/categories", summary="List categories", tags=["categories"], responses=READ_ERRORS)
async def list_categories(request: Request[Any, Any, Any]) -> CategoryPage:
    pool = pool_of(request)
    return CategoryPage(
        items=[_category(c) for c in await cats.list_categories(pool)], next_cursor=None
    )


@get(
    "/categories/{category_id:int}",
    summary="A category",
    tags=["categories"],
    responses={**READ_ERRORS, 404: _problem("No such category")},
)
async def get_category(category_id: FromPath[int], request: Request[Any, Any, Any]) -> CategoryOut:
    pool = pool_of(request)
    c = await cats.get_category(pool, category_id) if 1 <= category_id <= MAX_ID else None
    if c is None:
        from litestar.exceptions import NotFoundException

        raise NotFoundException(f"category {category_id} not found")
    return _category(c)


@post(
    "/categories",
    status_code=201,
    summary="Create a category (admin)",
    tags=["categories"],
    opt=allow("admin"),
    responses=_COMMON,
)
async def create_category(
    data: JSONBody[CategoryIn], request: Request[Any, Any, Any]
) -> Response[CategoryOut]:
    pool = pool_of(request)
    idem = idempotency_of(request, canonical_body(request_body(request)))
    c = await _category_replay(pool, idem)
    if c is None:
        try:
            c = await cats.create_category(
                pool,
                data.name,
                data.description,
                data.parent_id,
                created_by=_user(request).id,
                idempotency=idem,
            )
        except KeyTaken:  # a concurrent request with this key created it
            c = await _category_replay(pool, idem)
            assert c is not None
    return Response(_category(c), status_code=201, headers={"Location": f"/v1/categories/{c.id}"})


async def _category_replay(pool: asyncpg.Pool, idem: Idempotency | None) -> cats.Category | None:
    """The category a repeated Idempotency-Key created (None: the key is new)."""
    if idem is None:
        return None
    first = await idempotency_store.find(pool, idem.principal, idem.key, idem.request_hash)
    if first is None:
        return None
    created = first.result
    return await cats.get_category(pool, int(created["category_id"]))


@dataclass
class ProblemOperation(Operation):
    """A native route's operation: bad input is answered 422 problem+json (documented per
    route), so the framework's generic 400 body, which these routes never send, goes."""

    def __post_init__(self) -> None:
        if self.responses:
            self.responses.pop("400", None)


def problem_documented(handlers: list[HTTPRouteHandler]) -> list[HTTPRouteHandler]:
    for handler in handlers:
        handler.operation_class = ProblemOperation
    return handlers


router = Router(
    path="/v1",
    route_handlers=problem_documented(
        [
            raise_ticket,
            list_tickets,
            get_ticket,
            post_message,
            assign,
            change_status,
            change_priority,
            close,
            reopen,
            rate,
            ticket_log,
            list_categories,
            get_category,
            create_category,
        ]
    ),
    tags=["tickets"],
)
