"""Dialect ``backend`` (seed 004): an admin backend's ``/backend/api/support-ticket``.

Envelope ``{status, message, data}`` with ``status`` the number 1 on success and 0 on
error (the seed's list example prints "1"; the number is what its details print).
Ticket ids are numbers; statuses are the domain's names, or 1-5 in the status update.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post, put
from litestar.openapi.spec import OpenAPIType
from litestar.params import JSONBody, PathParameter, QueryParameter

from domain.errors import InvalidInput
from domain.events import STATUSES, Actor, ExternalAttachment, Status
from domain.ticket import Message, Ticket, can_see_internal
from services.api.attachments import attachment_names
from services.api.deps import commands_of, one_value_each, pool_of, settings_of
from services.api.dialects._common import (
    MAX_PAGE,
    actor_of,
    context,
    documented_as,
    flag,
    int_param,
    iso_z,
    last_actor,
    load_readable,
    positive_int,
    posted_message,
    renamed,
    wait_fresh,
)
from services.api.dialects._openapi import document
from services.api.errors import register_renderer
from services.categories import Category, list_categories

DIALECT = "backend"
BASE = "/backend/api/support-ticket"
STATUS_CODES: dict[Status, int] = {s: i for i, s in enumerate(STATUSES, start=1)}
_CODES_STATUS: dict[int, Status] = {i: s for s, i in STATUS_CODES.items()}
KEYWORD_MAX = 500  # as the native API's q
LIST_PARAMS = ("limit", "offset", "keyword", "count")
LOG_PARAMS = ("limit", "offset", "count", "ticketId")


LimitParam = Annotated[
    str | None,
    QueryParameter(
        **documented_as(
            OpenAPIType.INTEGER, "Limit the number of results (default 20, at most 100)", minimum=1
        )
    ),
]
OffsetParam = Annotated[
    str | None,
    QueryParameter(
        **documented_as(
            OpenAPIType.INTEGER, "The offset from where to start the results", minimum=0
        )
    ),
]
KeywordParam = Annotated[
    str | None,
    QueryParameter(
        **documented_as(
            OpenAPIType.STRING, "Search keyword (full text) for filtering tickets", maxLength=500
        )
    ),
]
CountFlag = Annotated[
    str | None,
    QueryParameter(
        **documented_as(
            OpenAPIType.BOOLEAN, "true: data is {count: N}, the number of tickets matching"
        )
    ),
]
CountInt = Annotated[
    str | None,
    QueryParameter(
        **documented_as(OpenAPIType.INTEGER, "Not 0: data is {count: N}, the number of logs")
    ),
]
TicketIdParam = Annotated[
    str | None,
    QueryParameter(
        **documented_as(OpenAPIType.INTEGER, "Only this ticket's logs (not in the seed)", minimum=1)
    ),
]
TicketIdPath = Annotated[
    str, PathParameter(**documented_as(OpenAPIType.INTEGER, "Ticket ID", minimum=1))
]


def offset_param(value: str | None) -> int:
    # int_param refuses more than the database's bigint (MAX_BIGINT) when there is no maximum
    return int_param(value, "offset", default=0, minimum=0)


class Envelope(msgspec.Struct):
    status: int
    message: str
    data: Any


class ErrorEnvelope(msgspec.Struct):
    """The error answer, as documented (render_error builds it as an Envelope)."""

    status: int  # 0
    message: str
    data: None


def ok(message: str, data: Any) -> Envelope:
    return Envelope(status=1, message=message, data=data)


class AttachmentIn(msgspec.Struct):
    fileName: str
    filePath: str


class AddMessage(msgspec.Struct):
    message: str | None = None
    attachments: list[AttachmentIn] = []


class UpdateStatus(msgspec.Struct):
    status: int | str | None = None
    reason: str | None = None
    # Not in the seed (whose status is optional): the agent to assign, in the same call.
    assignee: str | None = None


class CategoryOut(msgspec.Struct):
    createdBy: str
    createdDate: str
    modifiedBy: str
    modifiedDate: str
    id: int
    categoryName: str
    parentCategoryId: int
    isActive: bool = True
    isDelete: bool = False


class AttachmentOut(msgspec.Struct, omit_defaults=True):
    fileName: str
    filePath: str
    attachmentId: str | None = None


class MessageOut(msgspec.Struct):
    createdBy: str
    createdDate: str
    modifiedBy: str
    modifiedDate: str
    id: int
    ticketId: int
    senderId: str
    senderType: str
    message: str
    sentAt: str
    isActive: bool
    isDelete: bool
    createdByType: str
    modifiedByType: str
    ticketAttachments: list[AttachmentOut]
    visibility: str


class TicketOut(msgspec.Struct):
    createdBy: str
    createdDate: str
    modifiedBy: str
    modifiedDate: str
    id: int
    refId: str
    userId: str
    userType: str
    categoryId: int
    subCategoryId: int
    subject: str
    description: str
    isActive: bool
    isDelete: bool
    status: str
    priority: str
    assignee: str | None
    ticketCategory: CategoryOut | None


class TicketDetailsOut(TicketOut):
    ticketMessage: list[MessageOut] = []
    ticketAttachments: list[AttachmentOut] = []


class LogOut(msgspec.Struct):
    createdBy: str
    createdDate: str
    modifiedBy: str
    modifiedDate: str
    id: int
    ticketId: int
    actionTaken: str
    action: str
    actionBy: str
    actionByType: str
    actionAt: str
    isActive: bool
    isDelete: bool
    createdByType: str
    modifiedByType: str


def _category(c: Category | None) -> CategoryOut | None:
    if c is None:
        return None
    by = c.created_by or "system"  # the defaults are seeded by migrate
    at = iso_z(c.created_at) or ""
    # categories are never edited: modified is created
    return CategoryOut(
        createdBy=by,
        createdDate=at,
        modifiedBy=by,
        modifiedDate=at,
        id=c.id,
        categoryName=c.name,
        parentCategoryId=c.parent_id or 0,
    )


def _ticket_fields(
    *,
    id: int,
    requester_id: str,
    requester_role: str,
    modified_by: str,
    created_at: datetime,
    updated_at: datetime,
    category: Category | None,
    category_id: int,
    subject: str,
    description: str,
    status: str,
    priority: str,
    assignee: str | None,
) -> dict[str, Any]:
    return {
        "createdBy": requester_id,
        "createdDate": iso_z(created_at) or "",
        "modifiedBy": modified_by,
        "modifiedDate": iso_z(updated_at) or "",
        "id": id,
        "refId": f"TICKET{id}",
        "userId": requester_id,
        "userType": requester_role,
        "categoryId": category_id,
        "subCategoryId": 0,
        "subject": subject,
        "description": description,
        "isActive": True,
        "isDelete": False,
        "status": status,
        "priority": priority,
        "assignee": assignee,
        "ticketCategory": _category(category),
    }


def _message(m: Message, ticket_id: int, names: Mapping[str, str]) -> MessageOut:
    at = iso_z(m.created_at) or ""
    return MessageOut(
        createdBy=m.author.id,
        createdDate=at,
        modifiedBy=m.author.id,
        modifiedDate=at,
        id=m.id,
        ticketId=ticket_id,
        senderId=m.author.id,
        senderType=m.author.role,
        message=m.body,
        sentAt=at,
        isActive=True,
        isDelete=False,
        createdByType=m.author.role,
        modifiedByType=m.author.role,
        ticketAttachments=[
            *(
                AttachmentOut(fileName=a.file_name, filePath=a.file_path)
                for a in m.external_attachments
            ),
            *(_uploaded(a, names) for a in m.attachments),
        ],
        visibility=m.visibility,
    )


def _uploaded(attachment_id: str, names: Mapping[str, str]) -> AttachmentOut:
    """A file uploaded through /v1/attachments: its name as uploaded, its download path."""
    return AttachmentOut(
        fileName=names.get(attachment_id, attachment_id),
        filePath=f"/v1/attachments/{attachment_id}",
        attachmentId=attachment_id,
    )


def details_of(
    ticket: Ticket,
    messages: list[Message],
    category: Category | None,
    by: Actor | None,
    names: Mapping[str, str],
) -> TicketDetailsOut:
    fields = _ticket_fields(
        id=ticket.id,
        requester_id=ticket.requester.id,
        requester_role=ticket.requester.role,
        modified_by=(by or ticket.requester).id,
        created_at=ticket.created_at,
        updated_at=ticket.updated_at,
        category=category,
        category_id=ticket.category_id,
        subject=ticket.subject,
        description=ticket.description,
        status=ticket.status,
        priority=ticket.priority,
        assignee=ticket.assignee,
    )
    return TicketDetailsOut(
        **fields,
        ticketMessage=[_message(m, ticket.id, names) for m in messages],
        ticketAttachments=[_uploaded(a, names) for a in ticket.attachments],
    )


def _ticket_id(value: str) -> int:
    return positive_int(value, "id")


def _status(value: int | str | None) -> Status:
    if value is None or value == "":
        raise InvalidInput("status is required: 1-5 or a status name", field="status")
    if (isinstance(value, int) and not isinstance(value, bool)) or (
        # ASCII digits only: str.isdigit() also takes "²" (int() refuses it) and "٣"
        isinstance(value, str) and value.strip().isascii() and value.strip().isdigit()
    ):
        status = _CODES_STATUS.get(int(value))
    else:
        status = None
        if isinstance(value, str):
            word = value.strip().lower().replace(" ", "_").replace("-", "_")
            status = {"inprogress": "in_progress", "onhold": "on_hold"}.get(word, word)  # type: ignore[assignment]
            if status not in STATUSES:
                status = None
    if status is None:
        codes = ", ".join(f"{i} {s}" for s, i in STATUS_CODES.items())
        raise InvalidInput(f"status must be one of {codes} (number or name)", field="status")
    return status


# --- handlers ----------------------------------------------------------------------------


@get(
    BASE,
    summary="Get support tickets",
    description="Seed 004. limit (default 20, at most 100), offset, keyword (full-text "
    "search), count=true for data: {count: N}. Customers see their own tickets.",
    operation_id="backend_list_tickets",
)
async def list_tickets(
    request: Request[Any, Any, Any],
    limit: LimitParam = None,
    offset: OffsetParam = None,
    keyword: KeywordParam = None,
    count: CountFlag = None,
) -> Envelope:
    commands = commands_of(request)
    pool = pool_of(request)
    settings = settings_of(request)
    from projections.queries import TicketFilter, count_tickets, last_actors
    from projections.queries import list_tickets as query

    actor = actor_of(request)
    one_value_each(request, LIST_PARAMS)
    if keyword is not None and len(keyword) > KEYWORD_MAX:
        raise InvalidInput(f"keyword must be at most {KEYWORD_MAX} characters", field="keyword")
    f = TicketFilter(
        q=keyword or None,
        requester=actor.id if actor.role == "customer" else None,
        internal_notes=can_see_internal(actor),
    )
    limit_n = int_param(limit, "limit", default=20, minimum=1, maximum=MAX_PAGE)
    offset_n = offset_param(offset)
    want_count = flag(count, "count")
    await wait_fresh(request)
    now = commands.clock()
    if want_count:
        n = await count_tickets(pool, f, now=now, timezone=settings.timezone)
        return ok("Support tickets counted successfully", {"count": n})
    rows, _ = await query(
        pool, f, limit=limit_n, offset=offset_n, now=now, timezone=settings.timezone
    )
    categories = {c.id: c for c in await list_categories(pool)}
    by = await last_actors(pool, [r.id for r in rows], public_only=not can_see_internal(actor))
    data = [
        TicketOut(
            **_ticket_fields(
                id=r.id,
                requester_id=r.requester_id,
                requester_role=r.requester_role,
                modified_by=by.get(r.id, r.requester_id),
                created_at=r.created_at,
                updated_at=r.updated_at,
                category=categories.get(r.category_id),
                category_id=r.category_id,
                subject=r.subject,
                description=r.description,
                status=r.status,
                priority=r.priority,
                assignee=r.assignee,
            )
        )
        for r in rows
    ]
    return ok("Support tickets retrieved successfully", data)


@get(
    f"{BASE}/ticket-logs",
    summary="Get ticket logs",
    description="Seed 004. limit (default 20, at most 100), offset, count=1 for data: "
    "{count: N}; ticketId narrows to one ticket. Customers see their own tickets' logs.",
    operation_id="backend_ticket_logs",
)
async def ticket_logs(
    request: Request[Any, Any, Any],
    limit: LimitParam = None,
    offset: OffsetParam = None,
    count: CountInt = None,
    ticketId: TicketIdParam = None,
) -> Envelope:
    pool = pool_of(request)
    from projections.queries import count_logs, list_logs

    actor = actor_of(request)
    one_value_each(request, LOG_PARAMS)
    customer = actor.role == "customer"
    ticket_id = positive_int(ticketId, "ticketId") if ticketId else None
    limit_n = int_param(limit, "limit", default=20, minimum=1, maximum=MAX_PAGE)
    offset_n = offset_param(offset)
    want_count = flag(count, "count")
    if ticket_id is not None:
        # one ticket's logs: an unknown ticket is 404 and another customer's 403, as
        # everywhere else a ticket is named
        await load_readable(commands_of(request), ticket_id, actor)
    scope: dict[str, Any] = {
        "ticket_id": ticket_id,
        "requester": actor.id if customer else None,
        "public_only": customer,
    }
    await wait_fresh(request)
    if want_count:
        return ok("Successfully counted ticket logs", {"count": await count_logs(pool, **scope)})
    rows = await list_logs(pool, limit=limit_n, offset=offset_n, **scope)
    data = []
    for r in rows:
        at = iso_z(r.at) or ""
        data.append(
            LogOut(
                createdBy=r.actor_id,
                createdDate=at,
                modifiedBy=r.actor_id,
                modifiedDate=at,
                id=r.position,
                ticketId=r.ticket_id,
                actionTaken=r.action_text,
                action=r.action,
                actionBy=r.actor_name or r.actor_id,
                actionByType=r.actor_role,
                actionAt=at,
                isActive=True,
                isDelete=False,
                createdByType=r.actor_role,
                modifiedByType=r.actor_role,
            )
        )
    return ok("Successfully retrieved ticket logs", data)


@get(
    f"{BASE}/{{id:str}}",
    summary="Get ticket details",
    description="Seed 004. The ticket with ticketMessage (each with ticketAttachments).",
    operation_id="backend_get_ticket",
)
async def get_ticket(
    request: Request[Any, Any, Any],
    id: TicketIdPath,
) -> Envelope:
    commands = commands_of(request)
    pool = pool_of(request)
    from services.categories import get_category

    actor = actor_of(request)
    ticket, events = await load_readable(commands, _ticket_id(id), actor)
    category = await get_category(pool, ticket.category_id)
    messages = ticket.visible_messages(actor)
    uploaded = [*ticket.attachments, *(a for m in messages for a in m.attachments)]
    names = await attachment_names(pool, uploaded)
    data = details_of(ticket, messages, category, last_actor(events, actor), names)
    return ok("Ticket details retrieved successfully", data)


@post(
    f"{BASE}/{{id:str}}",
    status_code=200,
    summary="Add message and attachments to ticket",
    description="Seed 004. message, attachments: [{fileName, filePath}] kept as external "
    "references.",
    operation_id="backend_add_message",
)
async def add_message(
    request: Request[Any, Any, Any],
    id: TicketIdPath,
    data: JSONBody[AddMessage],
) -> Envelope:
    commands = commands_of(request)
    n = _ticket_id(id)
    external = [
        ExternalAttachment(file_name=a.fileName, file_path=a.filePath) for a in data.attachments
    ]
    body = data.message
    if (body is None or not body.strip()) and external:
        # The seed makes the text optional: a message may carry only files.
        body = "Attached: " + ", ".join(a.file_name for a in external)
    if body is None:
        raise InvalidInput("message is required (or at least one attachment)", field="message")
    with renamed(body="message"):
        result = await commands.post_message(
            await context(request, DIALECT),
            n,
            body=body,
            body_type="plain",
            external_attachments=external,
        )
    msg, _ = posted_message(result)
    return ok(
        "Message and attachments added successfully",
        {
            "ticketId": n,
            "messageId": msg.message_id,
            "message": msg.body,
            "attachments": [
                {"fileName": a.file_name, "filePath": a.file_path} for a in msg.external_attachments
            ],
        },
    )


@put(
    f"{BASE}/{{id:str}}",
    status_code=200,
    summary="Update ticket status",
    description="Seed 004. status: 1 open, 2 in_progress, 3 on_hold, 4 resolved, 5 closed, "
    "or the name; optional reason; optional assignee (an agent id) to assign in the same call.",
    operation_id="backend_update_status",
)
async def update_status(
    request: Request[Any, Any, Any],
    id: TicketIdPath,
    data: JSONBody[UpdateStatus],
) -> Envelope:
    commands = commands_of(request)
    n = _ticket_id(id)
    if data.status is None and data.assignee is None:
        raise InvalidInput("status is required: 1-5 or a status name", field="status")
    status = _status(data.status) if data.status is not None else None
    ctx = await context(request, DIALECT)
    if data.assignee is not None and status is not None:
        # one command: a refused status change leaves no assignment behind
        result = await commands.assign_and_change_status(
            ctx, n, assignee=data.assignee, status=status, reason=data.reason
        )
    elif data.assignee is not None:
        result = await commands.assign(ctx, n, assignee=data.assignee)
    else:
        assert status is not None
        result = await commands.change_status(ctx, n, status=status, reason=data.reason)
    return ok(
        "Ticket status updated successfully",
        {"id": n, "status": STATUS_CODES[result.ticket.status], "assignee": result.ticket.assignee},
    )


# --- errors ------------------------------------------------------------------------------


def render_error(
    request: Request[Any, Any, Any], status: int, message: str, extra: dict[str, Any] | None
) -> Response[Any]:
    return Response(Envelope(status=0, message=message, data=None), status_code=status)


def _matches(path: str) -> bool:
    return path == "/backend" or path.startswith("/backend/")


register_renderer(DIALECT, _matches, render_error)

router = Router(
    path="/",
    route_handlers=document(
        [list_tickets, ticket_logs, get_ticket, add_message, update_status], ErrorEnvelope
    ),
    tags=["backend (seed 004)"],
)
