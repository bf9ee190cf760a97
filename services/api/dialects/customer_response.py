"""Dialect ``customer_response`` (seed 001): a customer's reply posted by an integration.

``POST /api/tickets/{id}/customer_response`` with ``body``, ``body_type`` (HTML|PLAIN,
default HTML) and an optional ``date`` ("YYYY-MM-DD HH:MM", local to TICKETING_TIMEZONE,
from 1970 on) kept as the event's occurred-at. The author is always the ticket's
requester; the answer is 200 with an empty body. Meant for HTTP Basic API users, Bearer
works too. A multipart body may not carry files (they would be lost): 400.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.enums import MediaType
from litestar.params import FromPath

from domain.errors import InvalidInput
from domain.events import BodyType
from services.api.deps import commands_of, settings_of
from services.api.dialects._common import (
    context,
    parse_local,
    positive_int,
    read_fields,
    text_field,
)
from services.api.dialects._openapi import Field, document
from services.api.errors import register_renderer

DIALECT = "customer_response"
_PATH = re.compile(r"^/api/tickets/[^/]+/customer_response/?$")
_BODY_TYPES: dict[str, BodyType] = {"html": "html", "plain": "plain"}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")


class ErrorBody(msgspec.Struct):
    message: str


@post(
    "/api/tickets/{id:str}/customer_response",
    status_code=200,
    summary="Add the customer's reply to a ticket",
    description="Seed 001. Body fields (JSON or form): body (required), body_type HTML|PLAIN "
    "(default HTML), date 'YYYY-MM-DD HH:MM' (optional, local time, from 1970 until now). "
    "No files (upload them with POST /v1/attachments). The reply is authored by the "
    "ticket's requester. 200 with an empty body.",
    operation_id="customer_response_add",
    media_type=MediaType.TEXT,
)
async def customer_response(
    request: Request[Any, Any, Any],
    id: FromPath[str],
) -> Response[bytes]:
    commands = commands_of(request)
    settings = settings_of(request)
    tid = positive_int(id, "id")
    fields = await read_fields(request)
    await _refuse_files(request)
    body = text_field(fields, "body", required=True)
    assert body is not None
    raw_type = (text_field(fields, "body_type") or "HTML").strip().lower()
    body_type = _BODY_TYPES.get(raw_type)
    if body_type is None:
        raise InvalidInput("body_type must be HTML or PLAIN", field="body_type")
    ctx = await context(request, DIALECT)
    date = text_field(fields, "date")
    if date is not None:
        ctx = msgspec.structs.replace(ctx, occurred_at=_reply_date(date, settings.timezone))
    await commands.post_message(ctx, tid, body=body, body_type=body_type, as_requester=True)
    return Response(content=b"", status_code=200, media_type=MediaType.TEXT)


def _reply_date(text: str, zone: str) -> datetime:
    """``date``: local time in TICKETING_TIMEZONE (a date at either end of the calendar
    is refused there; the command service refuses one before 1970 or ahead of its clock:
    services/commands.py _client_time)."""
    return parse_local(text, _DATE_FORMATS, zone, "date", "2014-07-14 12:34")


async def _refuse_files(request: Request[Any, Any, Any]) -> None:
    """A file sent in a multipart body would be dropped without a word: say so instead."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        return
    for name, value in (await request.form()).multi_items():
        if not isinstance(value, str):
            raise InvalidInput(
                f"{name}: a reply takes no files; send body (and body_type, date) as form "
                "fields or JSON",
                field=name,
            )


def render_error(
    request: Request[Any, Any, Any], status: int, message: str, extra: dict[str, Any] | None
) -> Response[Any]:
    return Response(ErrorBody(message=message), status_code=status)


def _matches(path: str) -> bool:
    return _PATH.match(path) is not None


register_renderer(DIALECT, _matches, render_error)

BODY = [
    Field("body", "string", True, "Treść odpowiedzi: the reply (HTML is sanitised)"),
    Field("body_type", "string", False, "Typ odpowiedzi: HTML (default) or PLAIN"),
    Field(
        "date",
        "string",
        False,
        "Data odpowiedzi: 'YYYY-MM-DD HH:MM', local time, from 1970 until now",
    ),
]

router = Router(
    path="/",
    route_handlers=document([customer_response], ErrorBody, {"customer_response": BODY}),
    tags=["customer_response (seed 001)"],
)
