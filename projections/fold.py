"""The fold every read model is derived from: domain.ticket.evolve plus list bookkeeping.

Both the incremental runner and the bulk rebuild go through ``step`` and the record
builders here, so a projection always equals a fold of its events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from domain import ticket as domain
from domain.events import (
    MessagePosted,
    PriorityChanged,
    SlaBreached,
    StatusChanged,
    TicketAssigned,
    TicketClosed,
    TicketRaised,
    TicketRated,
    TicketReopened,
)
from projections.statecodec import decode_state as decode_state  # re-exported
from projections.statecodec import encode_state
from services.eventstore import RecordedEvent

_json = msgspec.json.Encoder()


class Folded(msgspec.Struct):
    """One ticket's fold: the domain state (messages kept out) and list bookkeeping."""

    ticket: domain.Ticket
    message_count: int = 0
    public_message_count: int = 0
    last_activity_at: datetime | None = None
    last_position: int = 0


def step(folded: Folded | None, e: RecordedEvent) -> Folded | None:
    """Apply one event; None while the stream has not been raised (never fails)."""
    state = folded.ticket if folded is not None else None
    nxt = domain.evolve(state, e.event, e.occurred_at)
    if nxt is None:
        return None
    if folded is None or isinstance(e.event, TicketRaised):
        folded = Folded(ticket=nxt, last_activity_at=e.occurred_at)
    ev = e.event
    if isinstance(ev, MessagePosted):
        nxt = msgspec.structs.replace(nxt, messages=[])
        folded.message_count += 1
        if ev.visibility == "public":
            folded.public_message_count += 1
        folded.last_activity_at = e.occurred_at
    folded.ticket = nxt
    folded.last_position = e.position
    return folded


def action_text(e: RecordedEvent) -> str:
    ev = e.event
    match ev:
        case TicketRaised():
            return "Raised the ticket"
        case MessagePosted():
            return "Added an internal note" if ev.visibility == "internal" else "Replied"
        case TicketAssigned():
            return f"Assigned to {ev.assignee}"
        case StatusChanged():
            return f"Updated ticket status to {ev.status}"
        case PriorityChanged():
            return f"Changed priority to {ev.priority}"
        case TicketClosed():
            return "Closed the ticket"
        case TicketReopened():
            return "Reopened the ticket"
        case TicketRated():
            return f"Rated the ticket {ev.rating} out of 5"
        case SlaBreached():
            return f"SLA {ev.target} target breached"
    return e.type  # pragma: no cover - every event type is matched above


def details(e: RecordedEvent) -> str:
    """What the log row shows beyond the phrase; message bodies stay in ticket_messages."""
    ev = e.event
    d: dict[str, Any]
    if isinstance(ev, MessagePosted):
        d = {"message_id": ev.message_id, "visibility": ev.visibility, "body_type": ev.body_type}
    elif isinstance(ev, TicketRaised):
        d = {"subject": ev.subject, "category_id": ev.category_id, "priority": ev.priority}
    else:
        d = msgspec.to_builtins(ev)
        d.pop("type", None)
    return _json.encode(d).decode()


LOG_COLUMNS = (
    "position",
    "ticket_id",
    "version",
    "requester_id",
    "action",
    "action_text",
    "visibility",
    "actor_id",
    "actor_role",
    "actor_name",
    "at",
    "details",
)


def log_record(e: RecordedEvent, folded: Folded | None) -> tuple[Any, ...]:
    actor = e.metadata.actor
    internal = isinstance(e.event, MessagePosted) and e.event.visibility == "internal"
    return (
        e.position,
        e.stream_id,
        e.version,
        folded.ticket.requester.id if folded is not None else None,
        e.type,
        action_text(e),
        "internal" if internal else "public",
        actor.id,
        actor.role,
        actor.name,
        e.occurred_at,
        details(e),
    )


MESSAGE_COLUMNS = (
    "id",
    "ticket_id",
    "author_id",
    "author_role",
    "author_name",
    "body",
    "body_type",
    "visibility",
    "attachments",
    "external_attachments",
    "created_at",
    "position",
)


def message_record(e: RecordedEvent, ev: MessagePosted) -> tuple[Any, ...]:
    return (
        ev.message_id,
        e.stream_id,
        ev.author.id,
        ev.author.role,
        ev.author.name,
        ev.body,
        ev.body_type,
        ev.visibility,
        list(ev.attachments),
        _json.encode(ev.external_attachments).decode(),
        e.occurred_at,
        e.position,
    )


SUMMARY_COLUMNS = (
    "id",
    "subject",
    "description",
    "status",
    "priority",
    "category_id",
    "requester_id",
    "requester_role",
    "requester_name",
    "assignee",
    "created_at",
    "updated_at",
    "version",
    "first_response_due_at",
    "resolution_due_at",
    "first_response_at",
    "sla_paused",
    "first_response_breached",
    "resolution_breached",
    "rating",
    "rating_comment",
    "message_count",
    "public_message_count",
    "last_activity_at",
    "closed_at",
    "resolved_at",
    "resolution",
    "resolution_type",
    "resolution_subject",
    "reopened_count",
    "last_position",
    "sla_missed_due",
    "state",
)


def summary_record(f: Folded) -> tuple[Any, ...]:
    t = f.ticket
    clock = t.sla
    return (
        t.id,
        t.subject,
        t.description,
        t.status,
        t.priority,
        t.category_id,
        t.requester.id,
        t.requester.role,
        t.requester.name,
        t.assignee,
        t.created_at,
        t.updated_at,
        t.version,
        clock.first_response_due_at,
        clock.resolution_due_at,
        clock.first_response_at,
        clock.paused,
        clock.breached_first_response,
        clock.breached_resolution,
        t.rating,
        t.rating_comment,
        f.message_count,
        f.public_message_count,
        f.last_activity_at or t.created_at,
        t.closed_at,
        t.resolved_at,
        t.resolution,
        t.resolution_type,
        t.resolution_subject,
        t.reopened_count,
        f.last_position,
        _earliest(clock.first_response_missed, clock.resolution_missed),
        encode_state(t),
    )


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earliest due time a target passed unmet and no sweep recorded (the SLA
    sweep's work list of late-met targets), or None."""
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


def count_keys(f: Folded | None) -> tuple[tuple[int, str] | None, tuple[str, str] | None]:
    """(category, status) and (assignee, status) a ticket counts under."""
    if f is None:
        return None, None
    t = f.ticket
    agent = (t.assignee, t.status) if t.assignee is not None else None
    return (t.category_id, t.status), agent
