"""The ticket aggregate: ``decide`` turns a command into events, ``evolve`` folds them.

Both are pure. ``decide`` raises a DomainError when a command is not allowed;
``evolve`` never fails. Every rule of the contract lives here, not in an API dialect.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import assert_never

import msgspec

from domain import sla
from domain.commands import (
    AssignTicket,
    ChangePriority,
    ChangeStatus,
    CloseTicket,
    Command,
    PostMessage,
    RaiseTicket,
    RateTicket,
    RecordSlaBreach,
    ReopenTicket,
)
from domain.errors import (
    Forbidden,
    InvalidInput,
    InvalidState,
    NotRequester,
    TicketAlreadyClosed,
    TicketNotFound,
)
from domain.events import (
    STATUSES,
    Actor,
    BodyType,
    Event,
    ExternalAttachment,
    MessagePosted,
    Priority,
    PriorityChanged,
    SlaBreached,
    Status,
    StatusChanged,
    TicketAssigned,
    TicketClosed,
    TicketRaised,
    TicketRated,
    TicketReopened,
    Visibility,
)
from domain.text import clean_html, clean_text, optional_text

SUBJECT_MAX = 200
BODY_MAX = 20_000
SHORT_TEXT_MAX = 2_000
ASSIGNEE_MAX = 200
ATTACHMENTS_MAX = 20  # files per raise or message
FILE_NAME_MAX = 255
FILE_PATH_MAX = 2_000
STAFF = ("agent", "admin")


class Message(msgspec.Struct, frozen=True):
    id: int
    author: Actor
    body: str
    body_type: BodyType
    visibility: Visibility
    attachments: list[str]
    external_attachments: list[ExternalAttachment]
    created_at: datetime


class Ticket(msgspec.Struct, frozen=True):
    id: int
    subject: str
    description: str
    category_id: int
    priority: Priority
    status: Status
    requester: Actor
    created_at: datetime
    updated_at: datetime
    sla: sla.SlaClock
    version: int = 1
    assignee: str | None = None
    attachments: list[str] = []
    messages: list[Message] = []
    rating: int | None = None
    rating_comment: str | None = None
    resolution: str | None = None
    resolution_type: str | None = None
    resolution_subject: str | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    reopened_count: int = 0

    def visible_messages(self, actor: Actor) -> list[Message]:
        """Internal notes are for staff (and auditors) only."""
        if can_see_internal(actor):
            return list(self.messages)
        return [m for m in self.messages if m.visibility == "public"]


def can_see_internal(actor: Actor) -> bool:
    return actor.role in ("agent", "admin", "auditor", "system")


def can_read(ticket: Ticket, actor: Actor) -> bool:
    """Customers see only tickets they requested; every other role sees all."""
    return actor.role != "customer" or ticket.requester.id == actor.id


def is_unresolved(status: Status) -> bool:
    return status not in ("resolved", "closed")


# --- decide ---------------------------------------------------------------------------


def check_access(state: Ticket, actor: Actor) -> None:
    """May this actor command this ticket at all? (Before any version or state check,
    so a stale If-Match never tells a stranger anything about the ticket.)"""
    if actor.role == "auditor":
        raise Forbidden("auditors may read but not change tickets")
    if actor.role == "system":
        raise Forbidden("the system actor only records SLA breaches")
    if not can_read(state, actor):
        raise NotRequester("customers may act only on tickets they requested")


def decide(state: Ticket | None, command: Command) -> list[Event]:
    if isinstance(command, RaiseTicket):
        if state is not None:
            raise InvalidState(f"ticket {command.ticket_id} already exists")
        return _raise(command)
    if state is None:
        raise TicketNotFound("ticket not found")
    actor = command.actor
    if isinstance(command, RecordSlaBreach):
        if actor.role == "auditor":
            raise Forbidden("auditors may read but not change tickets")
        return _sla_breach(state, command)
    check_access(state, actor)
    match command:
        case PostMessage():
            return _message(state, command)
        case AssignTicket():
            return _assign(state, command)
        case ChangeStatus():
            return _change_status(state, command)
        case ChangePriority():
            return _change_priority(state, command)
        case CloseTicket():
            return _close(state, command)
        case ReopenTicket():
            return _reopen(state, command)
        case RateTicket():
            return _rate(state, command)
        case _:
            assert_never(command)


def _raise(c: RaiseTicket) -> list[Event]:
    actor = c.actor
    if actor.role not in ("customer", "agent", "admin"):
        raise Forbidden(f"role {actor.role} may not raise tickets")
    requester = actor
    if c.requester is not None and c.requester.id != actor.id:
        if actor.role == "customer":
            raise Forbidden("customers raise tickets only as themselves")
        requester = c.requester
        # Ids and names end up in every read model: no control characters (a NUL would
        # be stored in the log and then refused by every projection).
        clean_text(requester.id, "requester", min_len=1, max_len=200)
        if requester.name is not None:
            clean_text(requester.name, "requester name", min_len=0, max_len=200)
    if c.ticket_id <= 0:
        raise InvalidInput("ticket id must be positive", field="ticket_id")
    subject = clean_text(c.subject, "subject", min_len=1, max_len=SUBJECT_MAX)
    if "\n" in subject:
        raise InvalidInput("subject must be a single line", field="subject")
    description = clean_text(c.description, "description", min_len=1, max_len=BODY_MAX)
    _check_attachment_count(len(c.attachments))
    priority: Priority = c.priority or "medium"
    targets = c.sla_policy.get(priority)
    if targets is None:
        raise InvalidInput(f"no SLA targets configured for priority {priority}", field="priority")
    events: list[Event] = [
        TicketRaised(
            ticket_id=c.ticket_id,
            subject=subject.strip(),
            description=description,
            category_id=c.category_id,
            priority=priority,
            requester=requester,
            sla=targets,
            attachments=list(c.attachments),
        )
    ]
    if c.close_immediately:
        rtype = optional_text(c.resolution_type, "resolutionType", max_len=SHORT_TEXT_MAX)
        rsubj = optional_text(c.resolution_subject, "resolutionSubject", max_len=SHORT_TEXT_MAX)
        if rtype is None or rsubj is None:
            raise InvalidInput(
                "resolutionType and resolutionSubject are required when closing at once",
                field="resolutionType" if rtype is None else "resolutionSubject",
            )
        events.append(
            TicketClosed(
                resolution=optional_text(c.resolution, "resolution", max_len=BODY_MAX),
                resolution_type=rtype,
                resolution_subject=rsubj,
                previous="open",
            )
        )
    return events


def _message(state: Ticket, c: PostMessage) -> list[Event]:
    actor = c.actor
    if c.visibility == "internal" and actor.role not in STAFF:
        raise Forbidden("only agents and admins may post internal notes")
    if state.status == "closed":
        raise TicketAlreadyClosed("the ticket is closed; reopen it before adding messages")
    body = clean_text(c.body, "body", min_len=1, max_len=BODY_MAX)
    if c.body_type == "html":
        body = clean_html(body, "body")
    _check_attachment_count(len(c.attachments) + len(c.external_attachments))
    external = [_clean_reference(a) for a in c.external_attachments]
    author = state.requester if c.as_requester else actor
    if c.as_requester and c.visibility == "internal":
        raise InvalidInput("a requester's reply cannot be an internal note", field="visibility")
    events: list[Event] = []
    if state.status == "resolved" and author.id == state.requester.id:
        events.append(TicketReopened(reason="the requester replied", previous="resolved"))
    events.append(
        MessagePosted(
            message_id=c.message_id,
            author=author,
            body=body,
            body_type=c.body_type,
            visibility=c.visibility,
            attachments=list(c.attachments),
            external_attachments=external,
        )
    )
    return events


def _check_attachment_count(n: int) -> None:
    if n > ATTACHMENTS_MAX:
        raise InvalidInput(
            f"{n} attachments; the limit is {ATTACHMENTS_MAX} per request", field="attachments"
        )


def _clean_reference(a: ExternalAttachment) -> ExternalAttachment:
    """A file kept elsewhere (a name and a path): stored in the log and shown to every
    reader, so it obeys the text rules of every other field."""
    name = clean_text(a.file_name, "fileName", min_len=1, max_len=FILE_NAME_MAX)
    if "\n" in name:
        raise InvalidInput("fileName must be a single line", field="fileName")
    path = clean_text(a.file_path, "filePath", min_len=1, max_len=FILE_PATH_MAX)
    if "\n" in path:
        raise InvalidInput("filePath must be a single line", field="filePath")
    return ExternalAttachment(file_name=name, file_path=path)


def _require_staff(actor: Actor, what: str) -> None:
    if actor.role not in STAFF:
        raise Forbidden(f"only agents and admins may {what}")


def _assign(state: Ticket, c: AssignTicket) -> list[Event]:
    _require_staff(c.actor, "assign tickets")
    assignee = clean_text(c.assignee, "assignee", min_len=1, max_len=ASSIGNEE_MAX).strip()
    if state.status == "closed":
        raise TicketAlreadyClosed("a closed ticket cannot be assigned")
    if assignee == state.assignee:
        return []
    return [TicketAssigned(assignee=assignee, previous=state.assignee)]


def _change_status(state: Ticket, c: ChangeStatus) -> list[Event]:
    if c.status == "closed":
        # the same as close, which the requester may do too (a dialect whose only way to
        # close is a status update must not lock its customers out of closing)
        reason = optional_text(c.reason, "reason", max_len=SHORT_TEXT_MAX)
        return _close(state, CloseTicket(actor=c.actor, now=c.now, resolution=reason))
    _require_staff(c.actor, "change a ticket's status")
    if c.status not in STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    reason = optional_text(c.reason, "reason", max_len=SHORT_TEXT_MAX)
    if state.status == "closed":
        raise TicketAlreadyClosed("a closed ticket changes status only through reopen")
    if c.status == state.status:
        return []
    return [StatusChanged(status=c.status, previous=state.status, reason=reason)]


def _change_priority(state: Ticket, c: ChangePriority) -> list[Event]:
    _require_staff(c.actor, "change a ticket's priority")
    if state.status == "closed":
        raise TicketAlreadyClosed("a closed ticket's priority cannot change")
    if c.priority == state.priority:
        return []
    targets = c.sla_policy.get(c.priority)
    if targets is None:
        raise InvalidInput(f"no SLA targets configured for priority {c.priority}", field="priority")
    return [PriorityChanged(priority=c.priority, previous=state.priority, sla=targets)]


def _close(state: Ticket, c: CloseTicket) -> list[Event]:
    if state.status == "closed":
        raise TicketAlreadyClosed("the ticket is already closed")
    return [
        TicketClosed(
            resolution=optional_text(c.resolution, "resolution", max_len=BODY_MAX),
            resolution_type=optional_text(c.resolution_type, "resolutionType", max_len=2000),
            resolution_subject=optional_text(
                c.resolution_subject, "resolutionSubject", max_len=SHORT_TEXT_MAX
            ),
            previous=state.status,
        )
    ]


def _reopen(state: Ticket, c: ReopenTicket) -> list[Event]:
    reason = clean_text(c.reason, "reason", min_len=1, max_len=SHORT_TEXT_MAX)
    if state.status not in ("resolved", "closed"):
        raise InvalidState(
            f"only resolved or closed tickets can be reopened; this one is {state.status}"
        )
    return [TicketReopened(reason=reason, previous=state.status)]


def _rate(state: Ticket, c: RateTicket) -> list[Event]:
    if c.actor.id != state.requester.id:
        raise NotRequester("only the ticket's requester may rate it")
    if isinstance(c.rating, bool) or not isinstance(c.rating, int) or not 1 <= c.rating <= 5:
        raise InvalidInput("rating must be a whole number from 1 to 5", field="rating")
    if state.status not in ("resolved", "closed"):
        raise InvalidState("a ticket can be rated only once it is resolved or closed")
    comment = optional_text(c.comment, "comment", max_len=SHORT_TEXT_MAX)
    return [TicketRated(rating=c.rating, comment=comment)]


def _sla_breach(state: Ticket, c: RecordSlaBreach) -> list[Event]:
    if c.actor.role != "system":
        raise Forbidden("only the system records SLA breaches")
    # a resolved or closed ticket may still owe the record of a target it missed
    due = sla.breach_due(state.sla, c.target, c.now)
    if due is None:
        return []
    return [SlaBreached(target=c.target, due_at=due)]


# --- evolve ---------------------------------------------------------------------------


def evolve(state: Ticket | None, event: Event, at: datetime) -> Ticket | None:
    if isinstance(event, TicketRaised):
        return Ticket(
            id=event.ticket_id,
            subject=event.subject,
            description=event.description,
            category_id=event.category_id,
            priority=event.priority,
            status="open",
            requester=event.requester,
            created_at=at,
            updated_at=at,
            sla=sla.start(event.sla, at),
            attachments=list(event.attachments),
        )
    if state is None:  # an event before the stream's first: ignore, never fail
        return None
    r = msgspec.structs.replace
    nxt = state.version + 1
    # A client-dated event (customer_response) may be older; last activity never goes back.
    at_latest = max(at, state.updated_at)
    match event:
        case MessagePosted():
            msg = Message(
                id=event.message_id,
                author=event.author,
                body=event.body,
                body_type=event.body_type,
                visibility=event.visibility,
                attachments=list(event.attachments),
                external_attachments=list(event.external_attachments),
                created_at=at,
            )
            clock = state.sla
            if event.author.role in STAFF and event.visibility == "public":
                clock = sla.meet_first_response(clock, at)
            return r(
                state, messages=[*state.messages, msg], sla=clock, updated_at=at_latest, version=nxt
            )
        case TicketAssigned():
            return r(state, assignee=event.assignee, updated_at=at_latest, version=nxt)
        case StatusChanged():
            return r(
                state,
                status=event.status,
                sla=_clock_for_status(state.sla, state.status, event.status, at),
                resolved_at=(
                    at
                    if event.status == "resolved"
                    else None
                    if is_unresolved(event.status)
                    else state.resolved_at
                ),
                updated_at=at_latest,
                version=nxt,
            )
        case PriorityChanged():
            return r(
                state,
                priority=event.priority,
                sla=sla.retarget(state.sla, event.sla, at),
                updated_at=at_latest,
                version=nxt,
            )
        case TicketClosed():
            return r(
                state,
                status="closed",
                sla=sla.stop(state.sla, at),
                resolution=event.resolution,
                resolution_type=event.resolution_type,
                resolution_subject=event.resolution_subject,
                closed_at=at,
                updated_at=at_latest,
                version=nxt,
            )
        case TicketReopened():
            return r(
                state,
                status="open",
                sla=sla.restart_resolution(state.sla, at),
                closed_at=None,
                resolved_at=None,
                reopened_count=state.reopened_count + 1,
                updated_at=at_latest,
                version=nxt,
            )
        case TicketRated():
            return r(
                state,
                rating=event.rating,
                rating_comment=event.comment,
                updated_at=at_latest,
                version=nxt,
            )
        case SlaBreached():
            clock = sla.record_breach(state.sla, event.target, event.due_at)
            return r(state, sla=clock, version=nxt)
        case _:
            assert_never(event)


def _clock_for_status(clock: sla.SlaClock, old: Status, new: Status, at: datetime) -> sla.SlaClock:
    if old in ("resolved", "closed") and is_unresolved(new):
        clock = sla.restart_resolution(clock, at)
    if new == "on_hold":
        return sla.pause(clock, at)
    if old == "on_hold":
        clock = sla.resume(clock, at)
    if new == "resolved":
        return sla.stop(clock, at)
    return clock


def fold(events: Iterable[tuple[Event, datetime]]) -> Ticket | None:
    state: Ticket | None = None
    for event, at in events:
        state = evolve(state, event, at)
    return state
