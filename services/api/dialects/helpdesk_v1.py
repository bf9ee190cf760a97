"""Dialect ``helpdesk_v1`` (seed 003): an ISP helpdesk's ``/api/v1`` operations V1-V8.

Bodies come as JSON or as form data (urlencoded or multipart); every answer carries
``{status, errorCode, message}`` with ``errorCode`` repeating the HTTP status. Times are
``YYYY-MM-DD HH:MM:SS`` in TICKETING_TIMEZONE. ``type`` is a category name.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, cast

import msgspec
from litestar import Request, Response, Router, get, post, route
from litestar.enums import HttpMethod
from litestar.params import FromPath

from domain.errors import Forbidden, InvalidInput
from domain.events import Actor, Priority, Status
from domain.ticket import STAFF, Message, Ticket
from services.api.auth import READ_OPT
from services.api.deps import commands_of, pool_of, settings_of
from services.api.dialects._common import (
    actor_of,
    context,
    int_param,
    load_readable,
    local_text,
    parse_local,
    positive_int,
    posted_message,
    read_fields,
    renamed,
    text_field,
    wait_fresh,
)
from services.api.dialects._openapi import Field, document
from services.api.errors import register_renderer
from services.categories import find_by_name, list_categories

DIALECT = "helpdesk_v1"
PREFIX = "/api/v1"
LIST_LIMIT = 100

STATUS_OUT: dict[Status, str] = {
    "open": "open",
    "in_progress": "inprogress",
    "on_hold": "onhold",
    "resolved": "resolved",
    "closed": "closed",
}
# Filter words of V2 (and the domain's own names) -> the query layer's status filter.
STATUS_FILTERS: dict[str, str] = {
    "unresolved": "unresolved",
    "overdue": "overdue",
    "duetoday": "duetoday",
    "open": "open",
    "onhold": "on_hold",
    "unassigned": "unassigned",
    "closed": "closed",
    "inprogress": "in_progress",
    "resolved": "resolved",
}
PRIORITIES: dict[str, Priority] = {
    "low": "low",
    "medium": "medium",
    "high": "high",
    "urgent": "urgent",
}
DATE_FORMATS = ("%d-%m-%Y %H:%M", "%d-%m-%Y %H:%M:%S", "%d-%m-%Y")


class Reply(msgspec.Struct, omit_defaults=True):
    status: str
    errorCode: int
    message: Any
    ticketId: str | None = None
    messageId: str | None = None
    data: Any = None


def success(message: Any, **extra: Any) -> Reply:
    return Reply(status="success", errorCode=200, message=message, **extra)


def _user_scope(actor: Actor, user_id: str) -> str | None:
    """userId 0 means every ticket (staff only); a customer may name only themselves."""
    uid = user_id.strip()
    if not uid:
        raise InvalidInput("userId is required; send 0 for all tickets", field="userId")
    if actor.role == "customer":
        if uid == "0":
            raise Forbidden("userId 0 (all tickets) is for agents; send your own user id")
        if uid != actor.id:
            raise Forbidden("customers may list only their own tickets")
        return uid
    return None if uid == "0" else uid


def _same_user(actor: Actor, user_id: str) -> None:
    """A customer acting under another user's id is refused; staff act for anyone."""
    if actor.role == "customer" and user_id.strip() != actor.id:
        raise Forbidden("userId must be your own user id")


def _required(fields: dict[str, Any], name: str, *, numeric: bool = False) -> str:
    """A field the seed marks Mandatory: absent, null or blank is a 400 naming it."""
    value = text_field(fields, name, required=True, numeric=numeric)
    if value is None or not value.strip():
        raise InvalidInput(f"{name} is required", field=name)
    return value


def _keyword(value: Any, name: str) -> bool | None:
    """The seed's 'true'/'false' keyword (also JSON true/false, 1/0); None when absent."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    raise InvalidInput(f"{name} must be 'true' or 'false'", field=name)


def _rating(value: Any) -> int:
    """ratingValue: Numeric '1'..'5', as a number or a numeric string."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidInput("ratingValue is required", field="ratingValue")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # the domain checks the range
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}", value.strip()):
        return int(value.strip())
    raise InvalidInput("ratingValue must be 1, 2, 3, 4 or 5", field="ratingValue")


def _priority(value: str | None) -> Priority | None:
    if value is None:
        return None
    p = PRIORITIES.get(value.strip().lower())
    if p is None:
        raise InvalidInput("priority must be one of low, medium, high, urgent", field="priority")
    return p


def _sender(m: Message, ticket: Ticket) -> str:
    return "admin" if m.author.role in STAFF and m.author.id != ticket.requester.id else "user"


# --- V1 raise ----------------------------------------------------------------------------


@post(
    f"{PREFIX}/raise_ticket",
    status_code=200,
    summary="V1 - Raise ticket",
    description="Seed 003. Fields (JSON or form): type (category name), subject, priority "
    "(low|medium|high|urgent), userId (the requester; agents may raise for a customer), "
    "comments (the issue), closeTicketImmediately ('true'|'false') with resolutionType and "
    "resolutionSubject.",
    operation_id="helpdesk_v1_raise_ticket",
)
async def raise_ticket(
    request: Request[Any, Any, Any],
) -> Reply:
    commands = commands_of(request)
    pool = pool_of(request)
    actor = actor_of(request)
    fields = await read_fields(request)
    type_name = _required(fields, "type")
    subject = _required(fields, "subject")
    user_id = _required(fields, "userId", numeric=True)
    comments = _required(fields, "comments")
    category = await find_by_name(pool, type_name)
    if category is None:
        names = ", ".join(c.name for c in await list_categories(pool))
        raise InvalidInput(f"unknown ticket type {type_name!r}; known types: {names}", field="type")
    uid = user_id.strip()
    if uid == "0":  # get_tickets reads 0 as "every user": no ticket may belong to it
        raise InvalidInput("userId 0 stands for all users; give the requester's id", field="userId")
    requester = None if uid == actor.id else Actor(id=uid, role="customer")
    with renamed(description="comments"):
        result = await commands.raise_ticket(
            await context(request, DIALECT),
            subject=subject,
            description=comments,
            category_id=category.id,
            priority=_priority(text_field(fields, "priority")),
            requester=requester,
            close_immediately=bool(
                _keyword(fields.get("closeTicketImmediately"), "closeTicketImmediately")
            ),
            resolution_type=text_field(fields, "resolutionType"),
            resolution_subject=text_field(fields, "resolutionSubject"),
        )
    n = result.ticket.id
    return success(
        f"Your ticket with the ID {n} has been raised. Please wait for the response and "
        "note the ticket Id for future reference.",
        ticketId=str(n),
    )


# --- V2 list -----------------------------------------------------------------------------


class TicketItem(msgspec.Struct):
    id: str
    account_id: str
    user: str
    subject: str
    type: str
    priority: str
    due: str | None
    status: str
    assigned_to: str
    group_name: str
    created: str | None


class TicketWrap(msgspec.Struct):
    Ticket: TicketItem


class ListReply(msgspec.Struct):
    status: str
    errorCode: int
    data: list[TicketWrap]


@route(
    [
        f"{PREFIX}/get_tickets/{{userId:str}}",
        f"{PREFIX}/get_tickets/{{userId:str}}/{{status:str}}",
        f"{PREFIX}/get_tickets/{{userId:str}}/{{status:str}}/{{assigned_admin:str}}",
    ],
    http_method=[HttpMethod.GET, HttpMethod.POST],
    status_code=200,
    opt={READ_OPT: True},  # POST only carries the date filters: auditors may send it
    summary="V2 - Get tickets by status",
    description="Seed 003. userId 0 = all tickets (agents only). status: unresolved, "
    "overdue, duetoday, open, onhold, unassigned, closed (also inprogress, resolved). "
    "assigned_admin: the assignee. POST the same path with fromDate/toDate "
    "('dd-mm-yyyy H:m', local time) to bound the creation time. Newest first, at most 100 "
    "a page: limit (1-100) and offset (query or body) page through the rest.",
)
async def get_tickets(
    request: Request[Any, Any, Any],
) -> ListReply:
    commands = commands_of(request)
    pool = pool_of(request)
    settings = settings_of(request)
    from projections.queries import TicketFilter, list_tickets

    actor = actor_of(request)
    params = request.path_params
    fields = await read_fields(request) if request.method == "POST" else {}
    requester = _user_scope(actor, str(params["userId"]))
    status_word = params.get("status") or text_field(fields, "status")
    status = None
    if status_word and status_word.strip().lower() not in ("all", "any"):
        status = STATUS_FILTERS.get(status_word.strip().lower().replace("_", ""))
        if status is None:
            raise InvalidInput(f"status must be one of {', '.join(STATUS_FILTERS)}", field="status")
    assignee = params.get("assigned_admin") or text_field(fields, "assigned_admin")
    bounds: list[datetime | None] = []
    for name in ("fromDate", "toDate"):
        value = text_field(fields, name)
        bounds.append(
            None
            if value is None
            else parse_local(value, DATE_FORMATS, settings.timezone, name, "21-11-2016 17:01")
        )
    f = TicketFilter(
        status=status,
        assignee=assignee,
        requester=requester,
        created_from=bounds[0],
        created_to=bounds[1],
    )
    # Not in the seed, which lists at most a page: limit and offset (query or body) page
    # through the rest, newest first.
    query = request.query_params
    limit = int_param(
        query.get("limit") or fields.get("limit"),
        "limit",
        default=LIST_LIMIT,
        minimum=1,
        maximum=LIST_LIMIT,
    )
    offset = int_param(query.get("offset") or fields.get("offset"), "offset", default=0, minimum=0)
    await wait_fresh(request)
    rows, _ = await list_tickets(
        pool, f, limit=limit, offset=offset, now=commands.clock(), timezone=settings.timezone
    )
    names = {c.id: c.name for c in await list_categories(pool)}
    tz = settings.timezone
    return ListReply(
        status="success",
        errorCode=200,
        data=[
            TicketWrap(
                Ticket=TicketItem(
                    id=str(r.id),
                    account_id=r.requester_name or r.requester_id,
                    user=r.requester_id,
                    subject=r.subject,
                    type=names.get(r.category_id, str(r.category_id)),
                    priority=r.priority,
                    due=local_text(r.resolution_due_at, tz),
                    status=STATUS_OUT.get(cast(Status, r.status), r.status),
                    assigned_to=r.assignee or "NULL",
                    group_name=names.get(r.category_id, str(r.category_id)),
                    created=local_text(r.created_at, tz),
                )
            )
            for r in rows
        ],
    )


# --- V3 send message ---------------------------------------------------------------------


@post(
    f"{PREFIX}/send_message",
    status_code=200,
    summary="V3 - Send message",
    description="Seed 003. Fields, all mandatory: ticketId, ticketMessage, sender "
    "(admin|user), sender_name, showToUser ('true'|'false'; false = internal note). "
    "sender=user from an agent's credentials relays the customer's reply (authored by the "
    "requester).",
    operation_id="helpdesk_v1_send_message",
)
async def send_message(request: Request[Any, Any, Any]) -> Reply:
    commands = commands_of(request)
    actor = actor_of(request)
    fields = await read_fields(request)
    # Every field of V3 is Mandatory in the seed: each is checked, in the seed's order,
    # before the command runs, so a request missing one appends nothing.
    ticket_id = positive_int(fields.get("ticketId"), "ticketId")
    body = _required(fields, "ticketMessage")
    sender = _required(fields, "sender").strip().lower()
    if sender not in ("admin", "user"):
        raise InvalidInput("sender must be admin or user", field="sender")
    # The seed types sender_name Numeric but its samples carry names ("max", an e-mail):
    # text or a number. It is not recorded: the credentials name the author.
    _required(fields, "sender_name", numeric=True)
    visible = _keyword(fields.get("showToUser"), "showToUser")
    if visible is None:
        raise InvalidInput("showToUser is required ('true' or 'false')", field="showToUser")
    if sender == "admin" and actor.role == "customer":
        raise Forbidden("customers send messages as user, not admin")
    with renamed(body="ticketMessage"):
        result = await commands.post_message(
            await context(request, DIALECT),
            ticket_id,
            body=body,
            body_type="plain",
            visibility="public" if visible else "internal",
            as_requester=sender == "user" and actor.role != "customer",
        )
    msg, _ = posted_message(result)
    return success(
        f"The message has been sent to the {sender}",
        ticketId=str(ticket_id),
        messageId=str(msg.message_id),
    )


# --- V4 details --------------------------------------------------------------------------


@get(
    f"{PREFIX}/get_ticket_details/{{ticketId:str}}",
    summary="V4 - Get ticket details by ticket id",
    description="Seed 003. The conversation, opening with the issue as raised (message_id "
    "null), then the messages (internal notes only for staff), and the details.",
    operation_id="helpdesk_v1_get_ticket_details",
)
async def get_ticket_details(
    request: Request[Any, Any, Any],
    ticketId: FromPath[str],
) -> Reply:
    commands = commands_of(request)
    pool = pool_of(request)
    settings = settings_of(request)
    actor = actor_of(request)
    ticket, _ = await load_readable(commands, positive_int(ticketId, "ticketId"), actor)
    tz = settings.timezone
    names = {c.id: c.name for c in await list_categories(pool)}
    # The conversation opens with the issue as raised (V1's comments), as the seed's
    # sample does; it is no message, so it has no message id.
    issue = {
        "message_id": None,
        "sender": "user",
        "sender_name": ticket.requester.name or ticket.requester.id,
        "ticket_message": ticket.description,
        "created": local_text(ticket.created_at, tz),
        "show_to_user": "1",
    }
    conversation = [issue] + [
        {
            "message_id": str(m.id),
            "sender": _sender(m, ticket),
            "sender_name": m.author.name or m.author.id,
            "ticket_message": m.body,
            "created": local_text(m.created_at, tz),
            "show_to_user": "1" if m.visibility == "public" else "0",
        }
        for m in ticket.visible_messages(actor)
    ]
    details = {
        "ticket_id": str(ticket.id),
        "user": ticket.requester.id,
        "subject": ticket.subject,
        "description": ticket.description,
        "type": names.get(ticket.category_id, str(ticket.category_id)),
        "priority": ticket.priority,
        "status": STATUS_OUT[ticket.status],
        "assigned_to": ticket.assignee or "NULL",
        "due": local_text(ticket.sla.resolution_due_at, tz),
        "created": local_text(ticket.created_at, tz),
        "rating": ticket.rating,
    }
    return success({"ticket_conversation": conversation, "ticket_details": details})


# --- V5 close ----------------------------------------------------------------------------


@route(
    f"{PREFIX}/close_ticket/{{ticketId:str}}",
    http_method=[HttpMethod.GET, HttpMethod.POST],
    status_code=200,
    summary="V5 - Close ticket by ticket id",
    description="Seed 003 documents GET; POST works too and may carry resolution, "
    "resolutionType, resolutionSubject.",
)
async def close_ticket(
    request: Request[Any, Any, Any],
    ticketId: FromPath[str],
) -> Reply:
    commands = commands_of(request)
    n = positive_int(ticketId, "ticketId")
    fields = await read_fields(request) if request.method == "POST" else {}
    await commands.close(
        await context(request, DIALECT),
        n,
        resolution=text_field(fields, "resolution") or text_field(fields, "comments"),
        resolution_type=text_field(fields, "resolutionType"),
        resolution_subject=text_field(fields, "resolutionSubject"),
    )
    return success("The ticket has been closed", ticketId=str(n))


# --- V6 assign ---------------------------------------------------------------------------


@post(
    f"{PREFIX}/assign_ticket_to_admin",
    status_code=200,
    summary="V6 - Assign ticket to admin",
    description="Seed 003. Fields: ticketId, admin (the agent's user name).",
    operation_id="helpdesk_v1_assign_ticket_to_admin",
)
async def assign_ticket(request: Request[Any, Any, Any]) -> Reply:
    commands = commands_of(request)
    fields = await read_fields(request)
    n = positive_int(fields.get("ticketId"), "ticketId")
    admin = _required(fields, "admin")
    with renamed(assignee="admin"):
        await commands.assign(await context(request, DIALECT), n, assignee=admin)
    return success("Admin assigned to the ticket successfully", ticketId=str(n))


# --- V7 reopen ---------------------------------------------------------------------------


@post(
    f"{PREFIX}/reopen_ticket",
    status_code=200,
    summary="V7 - Reopen ticket",
    description="Seed 003. Fields, all mandatory: ticketId, userId (a customer's own), "
    "comments (the reason).",
    operation_id="helpdesk_v1_reopen_ticket",
)
async def reopen_ticket(request: Request[Any, Any, Any]) -> Reply:
    commands = commands_of(request)
    actor = actor_of(request)
    fields = await read_fields(request)
    n = positive_int(fields.get("ticketId"), "ticketId")
    _same_user(actor, _required(fields, "userId", numeric=True))
    reason = _required(fields, "comments")
    with renamed(reason="comments"):
        await commands.reopen(await context(request, DIALECT), n, reason=reason)
    return success("Ticket has been reopened successfully", ticketId=str(n))


# --- V8 rating ---------------------------------------------------------------------------


@post(
    f"{PREFIX}/ticket_rating",
    status_code=200,
    summary="V8 - Ticket rating",
    description="Seed 003. Fields, all mandatory: ticketId, userId (the customer's own), "
    "ratingValue (1-5).",
    operation_id="helpdesk_v1_ticket_rating",
)
async def ticket_rating(request: Request[Any, Any, Any]) -> Reply:
    commands = commands_of(request)
    actor = actor_of(request)
    fields = await read_fields(request)
    n = positive_int(fields.get("ticketId"), "ticketId")
    _same_user(actor, _required(fields, "userId", numeric=True))
    rating = _rating(fields.get("ratingValue"))
    with renamed(rating="ratingValue"):
        await commands.rate(await context(request, DIALECT), n, rating=rating)
    return success(
        f"Thanks for your feedback, your rating has been saved for the ticket ID{n}",
        ticketId=str(n),
    )


# --- errors ------------------------------------------------------------------------------


def render_error(
    request: Request[Any, Any, Any], status: int, message: str, extra: dict[str, Any] | None
) -> Response[Any]:
    return Response(Reply(status="error", errorCode=status, message=message), status_code=status)


def _matches(path: str) -> bool:
    return path.startswith(PREFIX + "/")


register_renderer(DIALECT, _matches, render_error)


class ErrorReply(msgspec.Struct):
    """The error answer, as documented (render_error builds it as a Reply)."""

    status: str  # "error"
    errorCode: int
    message: str


_TICKET_ID = Field("ticketId", "integer", True, "Id of the ticket")
_USER_ID = Field("userId", "integer", True, "Id of the user (the caller's own, for customers)")
# The bodies of the routes that read JSON or form data themselves (seed 003's inputs).
BODIES: dict[str, list[Field]] = {
    "raise_ticket": [
        Field("type", "string", True, "Name of the ticket type (a category name)"),
        Field("subject", "string", True, "The ticket subject"),
        Field("priority", "string", False, "low, medium (default), high or urgent"),
        Field("userId", "integer", True, "The requester (agents may raise for a customer)"),
        Field("comments", "string", True, "The issue"),
        Field("closeTicketImmediately", "string", False, "'true' or 'false'"),
        Field("resolutionType", "string", False, "Required when closing immediately"),
        Field("resolutionSubject", "string", False, "Required when closing immediately"),
    ],
    "get_tickets": [
        Field("fromDate", "string", False, "Created at or after: 'dd-mm-yyyy H:m', local"),
        Field("toDate", "string", False, "Created before: 'dd-mm-yyyy H:m', local"),
        Field("limit", "integer", False, "Page size, 1-100 (default 100); not in the seed"),
        Field("offset", "integer", False, "Tickets to skip, newest first; not in the seed"),
    ],
    "send_message": [
        _TICKET_ID,
        Field("ticketMessage", "string", True, "The message"),
        Field("sender", "string", True, "admin or user (user from an agent: relayed reply)"),
        Field("sender_name", "string", True, "Sender's name (the credentials' name is recorded)"),
        Field("showToUser", "string", True, "'true' or 'false' (false: internal note)"),
    ],
    "close_ticket": [
        Field("resolution", "string", False, "How it was resolved (or comments)"),
        Field("resolutionType", "string", False, "Resolution type"),
        Field("resolutionSubject", "string", False, "Resolution subject"),
    ],
    "assign_ticket": [_TICKET_ID, Field("admin", "string", True, "The agent to assign")],
    "reopen_ticket": [_TICKET_ID, _USER_ID, Field("comments", "string", True, "The reason")],
    "ticket_rating": [_TICKET_ID, _USER_ID, Field("ratingValue", "integer", True, "1 to 5")],
}

router = Router(
    path="/",
    route_handlers=document(
        [
            raise_ticket,
            get_tickets,
            send_message,
            get_ticket_details,
            close_ticket,
            assign_ticket,
            reopen_ticket,
            ticket_rating,
        ],
        ErrorReply,
        BODIES,
    ),
    tags=["helpdesk_v1 (seed 003)"],
)
