"""Dialect ``support`` (seed 002): a lending app's Support API under ``/support``.

Ids are rendered ``ticket_<n>``, ``msg_<n>``, ``category_<n>`` and accepted with or
without the prefix; statuses and priorities use the seed's words; every answer, error
or not, is the ``{success, statusCode, data, error}`` envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, cast

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.spec import OpenAPIType, Operation, RequestBody
from litestar.params import FromPath, JSONBody, QueryParameter

from domain.errors import InvalidInput
from domain.events import Priority, Status
from domain.ticket import Message, Ticket
from services.api.deps import commands_of, one_value_each, pool_of, settings_of
from services.api.dialects._common import (
    MAX_BIGINT,
    MAX_PAGE,
    actor_of,
    context,
    documented_as,
    int_param,
    iso_z,
    load_readable,
    positive_int,
    posted_message,
    renamed,
    wait_fresh,
)
from services.api.dialects._openapi import document
from services.api.errors import register_renderer
from services.categories import list_categories

DIALECT = "support"

STATUS_OUT: dict[Status, str] = {
    "open": "Open",
    "in_progress": "In Progress",
    "on_hold": "On Hold",
    "resolved": "Resolved",
    "closed": "Closed",
}
PRIORITY_OUT: dict[Priority, str] = {
    "low": "Low",
    "medium": "Medium",
    "high": "High",
    "urgent": "Critical",
}
_STATUS_IN: dict[str, Status] = {
    **{v.lower().replace(" ", ""): k for k, v in STATUS_OUT.items()},
    **{k.replace("_", ""): k for k in STATUS_OUT},
}
_PRIORITY_IN: dict[str, Priority] = {
    **{v.lower(): k for k, v in PRIORITY_OUT.items()},
    **{k: k for k in PRIORITY_OUT},
}


LIST_PARAMS = ("status", "priority", "page", "limit")


def _documented(kind: OpenAPIType, description: str, **extra: Any) -> QueryParameter:
    return QueryParameter(**documented_as(kind, description, **extra))


StatusParam = Annotated[
    str | None,
    _documented(
        OpenAPIType.STRING,
        "Filter by status",
        enum=["Open", "In Progress", "On Hold", "Resolved", "Closed"],
    ),
]
PriorityParam = Annotated[
    str | None,
    _documented(
        OpenAPIType.STRING, "Filter by priority", enum=["Low", "Medium", "High", "Critical"]
    ),
]
PageParam = Annotated[
    str | None, _documented(OpenAPIType.INTEGER, "Page number (default: 1)", minimum=1)
]
LimitParam = Annotated[
    str | None,
    _documented(OpenAPIType.INTEGER, "Items per page (default: 20, at most 100)", minimum=1),
]


def tid(n: int) -> str:
    return f"ticket_{n}"


def parse_status(value: str) -> Status:
    status = _STATUS_IN.get(value.strip().lower().replace(" ", "").replace("_", ""))
    if status is None:
        raise InvalidInput(
            f"status must be one of {', '.join(STATUS_OUT.values())}", field="status"
        )
    return status


def parse_priority(value: str) -> Priority:
    priority = _PRIORITY_IN.get(value.strip().lower())
    if priority is None:
        raise InvalidInput(
            f"priority must be one of {', '.join(PRIORITY_OUT.values())}", field="priority"
        )
    return priority


# --- shapes ------------------------------------------------------------------------------


class Envelope(msgspec.Struct):
    success: bool
    statusCode: int
    data: Any
    error: Any = None


class ErrorInfo(msgspec.Struct):
    code: int
    message: str


class ErrorEnvelope(msgspec.Struct):
    """The error answer, as documented (render_error builds it as an Envelope)."""

    success: bool
    statusCode: int
    data: None
    error: ErrorInfo


@dataclass
class OptionalBody(Operation):
    """An operation whose JSON body may be left out (close: the seed requires nothing)."""

    def __post_init__(self) -> None:
        if isinstance(self.request_body, RequestBody):
            self.request_body.required = False


def ok(data: Any) -> Envelope:
    return Envelope(success=True, statusCode=200, data=data, error=None)


class CreateTicket(msgspec.Struct):
    subject: str  # required, as the seed's table says
    description: str
    categoryId: str | int
    priority: str | None = None
    attachments: list[str] = []


class AddMessage(msgspec.Struct):
    message: str  # required, as the seed's table says
    attachments: list[str] = []


class CloseTicket(msgspec.Struct):
    resolution: str | None = None


class TicketCreated(msgspec.Struct):
    ticketId: str
    subject: str
    status: str
    priority: str
    createdAt: str


class TicketSummary(msgspec.Struct):
    ticketId: str
    subject: str
    status: str
    priority: str
    createdAt: str
    updatedAt: str


class MessageOut(msgspec.Struct):
    messageId: str
    sender: str
    content: str
    timestamp: str
    attachments: list[str] = []
    # Not in the seed: staff see internal notes too, and must be able to tell them apart.
    visibility: str = "public"


class TicketDetails(msgspec.Struct):
    ticketId: str
    userId: str
    subject: str
    description: str
    status: str
    priority: str
    categoryId: str
    assignedAgent: str | None
    messages: list[MessageOut]
    createdAt: str
    updatedAt: str
    attachments: list[str] = []


class MessageAdded(msgspec.Struct):
    messageId: str
    ticketId: str
    content: str
    timestamp: str


class TicketClosed(msgspec.Struct):
    ticketId: str
    status: str
    closedAt: str | None


class CategoryOut(msgspec.Struct):
    categoryId: str
    name: str
    description: str  # "" for a category created without one: the seed shows a string


def _message(m: Message) -> MessageOut:
    return MessageOut(
        messageId=f"msg_{m.id}",
        sender=m.author.id,
        content=m.body,
        timestamp=iso_z(m.created_at) or "",
        attachments=list(m.attachments),
        visibility=m.visibility,
    )


def details_of(ticket: Ticket, messages: list[Message]) -> TicketDetails:
    return TicketDetails(
        ticketId=tid(ticket.id),
        userId=ticket.requester.id,
        subject=ticket.subject,
        description=ticket.description,
        status=STATUS_OUT[ticket.status],
        priority=PRIORITY_OUT[ticket.priority],
        categoryId=f"category_{ticket.category_id}",
        assignedAgent=ticket.assignee,
        messages=[_message(m) for m in messages],
        createdAt=iso_z(ticket.created_at) or "",
        updatedAt=iso_z(ticket.updated_at) or "",
        attachments=list(ticket.attachments),
    )


# --- handlers ----------------------------------------------------------------------------


@post(
    "/support/tickets",
    status_code=200,
    summary="Create a support ticket",
    description="Seed 002. priority: Low, Medium, High or Critical; categoryId like "
    "category_1 (or 1); attachments: ids from POST /v1/attachments.",
    operation_id="support_create_ticket",
)
async def create_ticket(
    request: Request[Any, Any, Any],
    data: JSONBody[CreateTicket],
) -> Envelope:
    commands = commands_of(request)
    category_id = positive_int(data.categoryId, "categoryId", prefix="category")
    priority = parse_priority(data.priority) if data.priority else None
    with renamed(category_id="categoryId"):
        result = await commands.raise_ticket(
            await context(request, DIALECT),
            subject=data.subject,
            description=data.description,
            category_id=category_id,
            priority=priority,
            attachments=data.attachments,
        )
    t = result.ticket
    return ok(
        TicketCreated(
            ticketId=tid(t.id),
            subject=t.subject,
            status=STATUS_OUT[t.status],
            priority=PRIORITY_OUT[t.priority],
            createdAt=iso_z(t.created_at) or "",
        )
    )


@get(
    "/support/tickets",
    summary="List support tickets",
    description="Seed 002. Customers see their own tickets, staff every ticket. Filters: "
    "status (Open, In Progress, On Hold, Resolved, Closed), priority; page (from 1) and "
    "limit (default 20, at most 100).",
    operation_id="support_list_tickets",
)
async def list_tickets(
    request: Request[Any, Any, Any],
    status: StatusParam = None,
    priority: PriorityParam = None,
    page: PageParam = None,
    limit: LimitParam = None,
) -> Envelope:
    commands = commands_of(request)
    pool = pool_of(request)
    settings = settings_of(request)
    from projections.queries import TicketFilter
    from projections.queries import list_tickets as query

    actor = actor_of(request)
    one_value_each(request, LIST_PARAMS)
    page_n = int_param(page, "page", default=1, minimum=1)
    limit_n = int_param(limit, "limit", default=20, minimum=1, maximum=MAX_PAGE)
    if (page_n - 1) * limit_n > MAX_BIGINT:  # rows skipped: the database's bigint
        last = MAX_BIGINT // limit_n + 1
        raise InvalidInput(f"page must be at most {last} with limit {limit_n}", field="page")
    f = TicketFilter(
        status=parse_status(status) if status else None,
        priority=parse_priority(priority) if priority else None,
        requester=actor.id if actor.role == "customer" else None,
    )
    await wait_fresh(request)
    rows, _ = await query(
        pool,
        f,
        limit=limit_n,
        offset=(page_n - 1) * limit_n,
        now=commands.clock(),
        timezone=settings.timezone,
    )
    return ok(
        [
            TicketSummary(
                ticketId=tid(r.id),
                subject=r.subject,
                status=STATUS_OUT[cast(Status, r.status)],
                priority=PRIORITY_OUT[cast(Priority, r.priority)],
                createdAt=iso_z(r.created_at) or "",
                updatedAt=iso_z(r.updated_at) or "",
            )
            for r in rows
        ]
    )


@get(
    "/support/tickets/{ticketId:str}",
    summary="Get ticket details with messages",
    description="Seed 002. ticketId like ticket_42 or 42.",
    operation_id="support_get_ticket",
)
async def get_ticket(
    request: Request[Any, Any, Any],
    ticketId: FromPath[str],
) -> Envelope:
    commands = commands_of(request)
    actor = actor_of(request)
    ticket, _ = await load_readable(
        commands, positive_int(ticketId, "ticketId", prefix="ticket"), actor
    )
    return ok(details_of(ticket, ticket.visible_messages(actor)))


@post(
    "/support/tickets/{ticketId:str}/messages",
    status_code=200,
    summary="Add a message to a ticket",
    description="Seed 002. attachments: ids from POST /v1/attachments.",
    operation_id="support_add_message",
)
async def add_message(
    request: Request[Any, Any, Any],
    ticketId: FromPath[str],
    data: JSONBody[AddMessage],
) -> Envelope:
    commands = commands_of(request)
    n = positive_int(ticketId, "ticketId", prefix="ticket")
    with renamed(body="message"):
        result = await commands.post_message(
            await context(request, DIALECT),
            n,
            body=data.message,
            body_type="plain",
            attachments=data.attachments,
        )
    msg, at = posted_message(result)
    return ok(
        MessageAdded(
            messageId=f"msg_{msg.message_id}",
            ticketId=tid(n),
            content=msg.body,
            timestamp=iso_z(at) or "",
        )
    )


@post(
    "/support/tickets/{ticketId:str}/close",
    status_code=200,
    summary="Close a ticket",
    description="Seed 002. Optional resolution text; the body may be left out.",
    operation_id="support_close_ticket",
    operation_class=OptionalBody,
)
async def close_ticket(
    request: Request[Any, Any, Any],
    ticketId: FromPath[str],
    data: JSONBody[CloseTicket | None] = None,
) -> Envelope:
    commands = commands_of(request)
    n = positive_int(ticketId, "ticketId", prefix="ticket")
    result = await commands.close(
        await context(request, DIALECT), n, resolution=data.resolution if data else None
    )
    t = result.ticket
    return ok(
        TicketClosed(ticketId=tid(n), status=STATUS_OUT[t.status], closedAt=iso_z(t.closed_at))
    )


@get(
    "/support/categories",
    summary="List support categories",
    description="Seed 002.",
    operation_id="support_list_categories",
)
async def categories(request: Request[Any, Any, Any]) -> Envelope:
    pool = pool_of(request)
    return ok(
        [
            CategoryOut(categoryId=f"category_{c.id}", name=c.name, description=c.description or "")
            for c in await list_categories(pool)
        ]
    )


# --- errors ------------------------------------------------------------------------------


def render_error(
    request: Request[Any, Any, Any], status: int, message: str, extra: dict[str, Any] | None
) -> Response[Any]:
    body = Envelope(
        success=False, statusCode=status, data=None, error=ErrorInfo(code=status, message=message)
    )
    return Response(body, status_code=status)


def _matches(path: str) -> bool:
    return path == "/support" or path.startswith("/support/")


register_renderer(DIALECT, _matches, render_error)

router = Router(
    path="/",
    route_handlers=document(
        [create_ticket, list_tickets, get_ticket, add_message, close_ticket, categories],
        ErrorEnvelope,
    ),
    tags=["support (seed 002)"],
)
