"""The facts of the ticket domain: immutable, tagged msgspec Structs, one schema version each.

Event names are a contract with auditors; never rename one. A payload change bumps
the event's SCHEMA and adds an upcaster in ``domain.upcasting``.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

import msgspec

Role = Literal["customer", "agent", "admin", "auditor", "system"]
Status = Literal["open", "in_progress", "on_hold", "resolved", "closed"]
Priority = Literal["low", "medium", "high", "urgent"]
BodyType = Literal["plain", "html"]
Visibility = Literal["public", "internal"]
SlaTarget = Literal["first_response", "resolution"]

STATUSES: tuple[Status, ...] = ("open", "in_progress", "on_hold", "resolved", "closed")
PRIORITIES: tuple[Priority, ...] = ("low", "medium", "high", "urgent")


class Actor(msgspec.Struct, frozen=True):
    """Who did something: the authenticated principal, or the system worker."""

    id: str
    role: Role
    name: str | None = None


SYSTEM = Actor(id="system", role="system", name="SLA worker")


class ExternalAttachment(msgspec.Struct, frozen=True):
    """A file kept elsewhere, referenced by name and path (the ``backend`` dialect)."""

    file_name: str
    file_path: str


class SlaTargets(msgspec.Struct, frozen=True):
    """First-response and resolution targets for one priority, in seconds."""

    first_response_s: int
    resolution_s: int


class _Event(msgspec.Struct, frozen=True, tag=True, tag_field="type"):
    SCHEMA: ClassVar[int] = 1


class TicketRaised(_Event, frozen=True):
    SCHEMA: ClassVar[int] = 2
    ticket_id: int
    subject: str
    description: str
    category_id: int
    priority: Priority
    requester: Actor
    sla: SlaTargets
    attachments: list[str] = []


class MessagePosted(_Event, frozen=True):
    message_id: int
    author: Actor
    body: str
    body_type: BodyType = "plain"
    visibility: Visibility = "public"
    attachments: list[str] = []
    external_attachments: list[ExternalAttachment] = []


class TicketAssigned(_Event, frozen=True):
    assignee: str
    previous: str | None = None


class StatusChanged(_Event, frozen=True):
    status: Status
    previous: Status
    reason: str | None = None


class PriorityChanged(_Event, frozen=True):
    priority: Priority
    previous: Priority
    sla: SlaTargets


class TicketClosed(_Event, frozen=True):
    resolution: str | None = None
    resolution_type: str | None = None
    resolution_subject: str | None = None
    previous: Status = "open"


class TicketReopened(_Event, frozen=True):
    reason: str
    previous: Status = "closed"


class TicketRated(_Event, frozen=True):
    rating: int
    comment: str | None = None


class SlaBreached(_Event, frozen=True):
    target: SlaTarget
    due_at: datetime


Event = (
    TicketRaised
    | MessagePosted
    | TicketAssigned
    | StatusChanged
    | PriorityChanged
    | TicketClosed
    | TicketReopened
    | TicketRated
    | SlaBreached
)

EVENT_TYPES: dict[str, type[_Event]] = {
    cls.__name__: cls
    for cls in (
        TicketRaised,
        MessagePosted,
        TicketAssigned,
        StatusChanged,
        PriorityChanged,
        TicketClosed,
        TicketReopened,
        TicketRated,
        SlaBreached,
    )
}


def event_type(event: Event) -> str:
    return type(event).__name__


def schema_of(event: Event) -> int:
    return type(event).SCHEMA
