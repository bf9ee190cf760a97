"""Commands: what an actor asks for, with the time it is asked (time is an input)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from domain.events import (
    Actor,
    BodyType,
    ExternalAttachment,
    Priority,
    SlaTarget,
    SlaTargets,
    Status,
    Visibility,
)


class _Command(msgspec.Struct, frozen=True, kw_only=True):
    actor: Actor
    now: datetime


class RaiseTicket(_Command, frozen=True, kw_only=True):
    ticket_id: int
    subject: str
    description: str
    category_id: int
    sla_policy: dict[str, SlaTargets]
    priority: Priority | None = None
    attachments: list[str] = []
    # Agents may raise on a customer's behalf; customers always raise as themselves.
    requester: Actor | None = None
    close_immediately: bool = False
    resolution: str | None = None
    resolution_type: str | None = None
    resolution_subject: str | None = None


class PostMessage(_Command, frozen=True, kw_only=True):
    message_id: int
    body: str
    body_type: BodyType = "plain"
    visibility: Visibility = "public"
    attachments: list[str] = []
    external_attachments: list[ExternalAttachment] = []
    # customer_response posts as the ticket's requester on an integration's behalf.
    as_requester: bool = False


class AssignTicket(_Command, frozen=True, kw_only=True):
    assignee: str


class ChangeStatus(_Command, frozen=True, kw_only=True):
    status: Status
    reason: str | None = None


class ChangePriority(_Command, frozen=True, kw_only=True):
    priority: Priority
    sla_policy: dict[str, SlaTargets]


class CloseTicket(_Command, frozen=True, kw_only=True):
    resolution: str | None = None
    resolution_type: str | None = None
    resolution_subject: str | None = None


class ReopenTicket(_Command, frozen=True, kw_only=True):
    reason: str


class RateTicket(_Command, frozen=True, kw_only=True):
    rating: int
    comment: str | None = None


class RecordSlaBreach(_Command, frozen=True, kw_only=True):
    target: SlaTarget


Command = (
    RaiseTicket
    | PostMessage
    | AssignTicket
    | ChangeStatus
    | ChangePriority
    | CloseTicket
    | ReopenTicket
    | RateTicket
    | RecordSlaBreach
)
