"""A tiny decider specification: ``given(events).when(command).then(events)`` or ``.raises(E)``.

Shared by the unit tests of the ticket domain; actors, times and event builders live here
so each test reads as the sentence it is named after.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.commands import Command
from domain.errors import DomainError
from domain.events import (
    Actor,
    Event,
    MessagePosted,
    Priority,
    SlaTargets,
    StatusChanged,
    TicketClosed,
    TicketRaised,
)
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets
from domain.ticket import Ticket, decide, fold

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
STEP = timedelta(minutes=1)

CUSTOMER = Actor(id="cust-1", role="customer", name="Cara Customer")
OTHER_CUSTOMER = Actor(id="cust-2", role="customer", name="Olly Other")
AGENT = Actor(id="agent-1", role="agent", name="Ada Agent")
AGENT_2 = Actor(id="agent-2", role="agent", name="Bo Agent")
ADMIN = Actor(id="admin-1", role="admin", name="Ann Admin")
AUDITOR = Actor(id="aud-1", role="auditor", name="Al Auditor")
SYSTEM = Actor(id="system", role="system", name="SLA worker")

POLICY: dict[str, SlaTargets] = {str(k): v for k, v in parse_targets(DEFAULT_SLA_TARGETS).items()}
TICKET_ID = 42


def raised(
    *, requester: Actor = CUSTOMER, priority: Priority = "medium", ticket_id: int = TICKET_ID
) -> TicketRaised:
    return TicketRaised(
        ticket_id=ticket_id,
        subject="Printer on fire",
        description="Smoke everywhere",
        category_id=1,
        priority=priority,
        requester=requester,
        sla=POLICY[priority],
    )


def status(new: Any, previous: Any) -> StatusChanged:
    return StatusChanged(status=new, previous=previous)


def closed(previous: Any = "open") -> TicketClosed:
    return TicketClosed(previous=previous)


def message(author: Actor = AGENT, *, message_id: int = 1, **kw: Any) -> MessagePosted:
    return MessagePosted(message_id=message_id, author=author, body=kw.pop("body", "hi"), **kw)


def timed(events: list[Event], start: datetime = T0) -> list[tuple[Event, datetime]]:
    """Each event one STEP after the previous, starting at ``start``."""
    return [(e, start + i * STEP) for i, e in enumerate(events)]


def at(n: int) -> datetime:
    """The time of the n-th step after T0 (the moment after ``n`` given events)."""
    return T0 + n * STEP


class _When:
    def __init__(self, state: Ticket | None, command: Command) -> None:
        self.state = state
        self.command = command

    def then(self, *expected: Event) -> list[Event]:
        produced = decide(self.state, self.command)
        assert produced == list(expected), f"expected {list(expected)!r}, got {produced!r}"
        return produced

    def raises(self, error: type[DomainError], match: str | None = None) -> DomainError:
        with pytest.raises(error, match=match) as info:
            decide(self.state, self.command)
        return info.value


class _Given:
    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.state = fold(timed(events))

    def when(self, command: Command) -> _When:
        return _When(self.state, command)


def given(*events: Event) -> _Given:
    return _Given(list(events))
