"""Dialect ``tickets_message`` (seed 000): ``POST /api/tickets/message`` adds a comment."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.params import JSONBody

from services.api.deps import commands_of
from services.api.dialects._common import (
    context,
    iso_z,
    positive_int,
    posted_message,
    renamed,
)
from services.api.dialects._openapi import document
from services.api.errors import register_renderer

DIALECT = "tickets_message"
PATH = "/api/tickets/message"


class AddMessage(msgspec.Struct):
    """Both fields are required (seed 000). ``ticketId`` is documented as int32 but the
    seed's example sends "123456": both work."""

    ticketId: int | str
    text: str


class MessageAdded(msgspec.Struct):
    success: bool
    message: str
    ticketId: str
    commentId: str
    createdDate: str


class ErrorBody(msgspec.Struct):
    success: bool
    message: str


@post(
    PATH,
    status_code=200,
    summary="Add a message to a ticket",
    description="Seed 000. Adds a public comment by the authenticated user; ticketId may be "
    "a number or a numeric string.",
    operation_id="tickets_message_add",
)
async def add_message(
    request: Request[Any, Any, Any],
    data: JSONBody[AddMessage],
) -> MessageAdded:
    commands = commands_of(request)
    ticket_id = positive_int(data.ticketId, "ticketId")
    with renamed(body="text"):
        result = await commands.post_message(
            await context(request, DIALECT), ticket_id, body=data.text, body_type="plain"
        )
    msg, at = posted_message(result)
    return MessageAdded(
        success=True,
        message="Message added to ticket successfully.",
        ticketId=str(ticket_id),
        commentId=str(msg.message_id),
        createdDate=iso_z(at) or "",
    )


def render_error(
    request: Request[Any, Any, Any], status: int, message: str, extra: dict[str, Any] | None
) -> Response[Any]:
    return Response(ErrorBody(success=False, message=message), status_code=status)


def _matches(path: str) -> bool:
    return path.rstrip("/") == PATH


register_renderer(DIALECT, _matches, render_error)

router = Router(
    path="/",
    route_handlers=document([add_message], ErrorBody),
    tags=["tickets_message (seed 000)"],
)
