"""What the five dialects share: reading bodies, parsing ids and times, loading a readable ticket.

Translation helpers only. Every rule (who may do what, lengths, states) lives in the
domain and is reached through CommandService.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request
from litestar.openapi.spec import OpenAPIType

from domain.errors import Forbidden, InvalidInput, TicketNotFound
from domain.events import Actor, MessagePosted
from domain.ticket import Ticket, can_read, can_see_internal
from services.commands import CommandResult, CommandService, Context
from services.eventstore import RecordedEvent

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_PAGE = 100


def actor_of(request: Request[Any, Any, Any]) -> Actor:
    user = request.user
    assert isinstance(user, Actor), "authentication must run before dialect handlers"
    return user


async def read_fields(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """A body sent as JSON or as a form (urlencoded or multipart), as one flat mapping."""
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in FORM_TYPES:
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    if not raw.strip():
        return {}
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise InvalidInput(
            "the body is not valid JSON; send JSON or application/x-www-form-urlencoded"
        ) from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


async def context(request: Request[Any, Any, Any], dialect: str) -> Context:
    """The command context: actor, request id, Idempotency-Key + fingerprint, If-Match."""
    from services.api import deps  # the app's seam; imported late to avoid import cycles

    body = await request.body()
    return deps.command_context(request, actor_of(request), dialect, body)


def text_field(
    fields: Mapping[str, Any], name: str, *, required: bool = False, numeric: bool = False
) -> str | None:
    """A text field; ``numeric`` also takes a JSON whole number (ids the seed types Numeric)."""
    value = fields.get(name)
    if value is None or (isinstance(value, str) and value.strip() == "" and not required):
        if required:
            raise InvalidInput(f"{name} is required", field=name)
        return None
    if numeric and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if numeric and isinstance(value, float) and value.is_integer():
        return str(int(value))
    if not isinstance(value, str):
        kind = "a whole number or a string" if numeric else "a string"
        raise InvalidInput(f"{name} must be {kind}", field=name)
    return value


@contextmanager
def renamed(**names: str) -> Iterator[None]:
    """Domain errors name the domain's fields (``body``); say the dialect's (``text``).

    ``renamed(body="text")``: an InvalidInput about ``body`` raised inside the block is
    re-raised about ``text``, so the client reads the name of the field it sent.
    """
    try:
        yield
    except InvalidInput as exc:
        new = names.get(exc.field or "")
        if new is None or exc.field is None:
            raise
        message = exc.message
        if message.startswith(exc.field):
            message = new + message[len(exc.field) :]
        raise type(exc)(message, field=new) from None


def positive_int(value: Any, name: str, *, prefix: str | None = None) -> int:
    """An id given as a number or a numeric string (optionally ``<prefix>_<n>``)."""
    if value is None or value == "":
        raise InvalidInput(f"{name} is required", field=name)
    if isinstance(value, bool):
        raise InvalidInput(f"{name} must be a number", field=name)
    if isinstance(value, int):
        n = value
    elif isinstance(value, float) and value.is_integer():
        n = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if prefix and text.lower().startswith(prefix + "_"):
            text = text[len(prefix) + 1 :]
        if not re.fullmatch(r"[0-9]{1,19}", text):  # ASCII digits: int() takes any script
            hint = f" (e.g. 42 or {prefix}_42)" if prefix else ""
            raise InvalidInput(f"{name} must be a positive whole number{hint}", field=name)
        n = int(text)
    else:
        raise InvalidInput(f"{name} must be a number", field=name)
    if n <= 0 or n > 2**63 - 1:
        raise InvalidInput(f"{name} must be a positive whole number", field=name)
    return n


MAX_BIGINT = 2**63 - 1


def int_param(
    value: Any, name: str, *, default: int, minimum: int, maximum: int | None = None
) -> int:
    if value is None or value == "":
        return default
    n: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, float) and value.is_integer():  # 2.0, not 2.7 rounded down
        n = int(value)
    elif isinstance(value, str) and (m := re.fullmatch(r"\s*(-?[0-9]+)(\.0*)?\s*", value)):
        n = int(m.group(1))  # ASCII digits ("2" or "2.0"; int() also reads other scripts')
    if n is None or n < minimum:
        raise InvalidInput(f"{name} must be a whole number of at least {minimum}", field=name)
    if maximum is None and n > MAX_BIGINT:  # a row count or offset: the database's bigint
        raise InvalidInput(f"{name} must be at most {MAX_BIGINT}", field=name)
    return min(n, maximum) if maximum is not None else n


def flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in ("true", "yes", "on"):
        return True
    if text in ("false", "no", "off", ""):
        return False
    if re.fullmatch(r"-?[0-9]{1,9}", text):  # seeds that type a flag as an integer: 0 or not
        return int(text) != 0
    raise InvalidInput(f"{name} must be true or false (or 1 or 0)", field=name)


def documented_as(kind: OpenAPIType, description: str, **extra: Any) -> dict[str, Any]:
    """The keyword arguments of a Query/PathParameter read as text (so its errors are the
    dialect's own), documented with the type the seed gives it."""
    return {"description": description, "schema_extra": {"one_of": None, "type": kind, **extra}}


def parse_local(
    value: str, formats: tuple[str, ...], zone: str, name: str, example: str
) -> datetime:
    """A client's local time in one of ``formats``, interpreted in TICKETING_TIMEZONE."""
    text = value.strip()
    for fmt in formats:
        try:
            naive = datetime.strptime(text, fmt)
        except ValueError:
            continue
        try:
            return naive.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        except OverflowError:  # the ends of the calendar, moved across the zone's offset
            raise InvalidInput(f"{name} {text} is out of range", field=name) from None
    raise InvalidInput(f"{name} must look like {example}", field=name)


def iso_z(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def local_text(dt: datetime | None, zone: str) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


async def load_readable(
    commands: CommandService, ticket_id: int, actor: Actor
) -> tuple[Ticket, list[RecordedEvent]]:
    """The ticket folded from its events (never stale); 404 unknown, 403 not theirs."""
    ticket, events = await commands.load(ticket_id)
    if ticket is None:
        raise TicketNotFound(f"ticket {ticket_id} does not exist")
    if not can_read(ticket, actor):
        raise Forbidden("customers may see only tickets they requested")
    return ticket, events


def posted_message(result: CommandResult) -> tuple[MessagePosted, datetime]:
    for e in result.events:
        if isinstance(e.event, MessagePosted):
            return e.event, e.occurred_at
    raise AssertionError("a PostMessage command always records a MessagePosted event")


async def wait_fresh(request: Request[Any, Any, Any]) -> None:
    """Read-your-writes before a list query (sets X-Projection-Lag-Ms when it runs out)."""
    from services.api.deps import consistent

    await consistent(request)


def last_actor(events: list[RecordedEvent], reader: Actor) -> Actor | None:
    """Who changed the ticket last, as far as ``reader`` may see: a customer is not shown
    the author of an internal note (the rule of ``queries.last_actors``, for lists)."""
    hide_internal = not can_see_internal(reader)
    for e in reversed(events):
        note = isinstance(e.event, MessagePosted) and e.event.visibility == "internal"
        if note and hide_internal:
            continue
        return e.metadata.actor
    return None
