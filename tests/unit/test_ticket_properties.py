"""Properties of the ticket decider: random command sequences from several actors.

Whatever is asked, in whatever order, by whomever: invariants hold, decide only ever
raises domain errors, fold is deterministic and equal to stepwise evolve, and every
emitted event survives a JSON round trip unchanged.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ticket_spec import (
    ADMIN,
    AGENT,
    AGENT_2,
    AUDITOR,
    CUSTOMER,
    OTHER_CUSTOMER,
    POLICY,
    SYSTEM,
    T0,
)

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
from domain.errors import DomainError
from domain.events import (
    PRIORITIES,
    STATUSES,
    Event,
    MessagePosted,
    SlaBreached,
    StatusChanged,
    TicketClosed,
    TicketRaised,
    TicketRated,
    TicketReopened,
)
from domain.ticket import STAFF, Ticket, decide, evolve, fold

ACTORS = [CUSTOMER, OTHER_CUSTOMER, AGENT, AGENT_2, ADMIN, AUDITOR, SYSTEM]
actors = st.sampled_from(ACTORS)
# Mostly short, sometimes hostile text: control characters, HTML, blanks, unicode.
texts = st.one_of(
    st.sampled_from(["ok", "", "  ", "<b>hi</b><script>x()</script>", "a\x00b", "é 😀 \t\n"]),
    st.text(max_size=40),
)
optional_texts = st.none() | texts

event_json = msgspec.json.Encoder()
event_decoder = msgspec.json.Decoder(Event)


@st.composite
def commands(draw: st.DrawFn, message_id: int) -> Command:
    actor = draw(actors)
    now = T0  # replaced by the runner with a strictly increasing time
    kind = draw(st.integers(0, 8))
    if kind <= 2:  # messages are the commonest command
        return PostMessage(
            actor=actor,
            now=now,
            message_id=message_id,
            body=draw(texts),
            body_type=draw(st.sampled_from(["plain", "html"])),
            visibility=draw(st.sampled_from(["public", "internal"])),
            as_requester=draw(st.booleans()),
        )
    if kind == 3:
        return AssignTicket(
            actor=actor,
            now=now,
            assignee=draw(st.sampled_from(["agent-1", "agent-2", "", "x\x01"])),
        )
    if kind == 4:
        return ChangeStatus(
            actor=actor,
            now=now,
            status=draw(st.sampled_from(STATUSES)),
            reason=draw(optional_texts),
        )
    if kind == 5:
        return ChangePriority(
            actor=actor, now=now, priority=draw(st.sampled_from(PRIORITIES)), sla_policy=POLICY
        )
    if kind == 6:
        return CloseTicket(actor=actor, now=now, resolution=draw(optional_texts))
    if kind == 7:
        if draw(st.booleans()):
            return ReopenTicket(actor=actor, now=now, reason=draw(texts))
        rating: Any = draw(st.one_of(st.integers(-1, 7), st.booleans()))
        return RateTicket(actor=actor, now=now, rating=rating, comment=draw(optional_texts))
    return RecordSlaBreach(
        actor=draw(st.sampled_from([SYSTEM, SYSTEM, AGENT])),
        now=now,
        target=draw(st.sampled_from(["first_response", "resolution"])),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[RaiseTicket, list[tuple[Command, timedelta]]]:
    raise_cmd = RaiseTicket(
        actor=draw(st.sampled_from([CUSTOMER, AGENT, ADMIN])),
        now=T0,
        ticket_id=1,
        subject=draw(st.sampled_from(["Printer", "Laptop won't boot"])),
        description=draw(st.sampled_from(["It broke", "Line one\nline two"])),
        category_id=1,
        sla_policy=POLICY,
        priority=draw(st.none() | st.sampled_from(PRIORITIES)),
        requester=CUSTOMER,
        close_immediately=draw(st.booleans()),
        resolution_type=draw(st.none() | st.just("Fixed")),
        resolution_subject=draw(st.none() | st.just("Toner")),
    )
    n = draw(st.integers(0, 30))
    steps = [
        (draw(commands(i + 1)), timedelta(seconds=draw(st.integers(1, 3 * 24 * 3600))))
        for i in range(n)
    ]
    return raise_cmd, steps


def _with_now(command: Command, now: datetime) -> Command:
    return msgspec.structs.replace(command, now=now)


def _check_emitted(before: Ticket | None, command: Command, events: list[Event]) -> None:
    """Rules that must hold for what one successful command produced."""
    status = before.status if before is not None else None
    for event in events:
        assert status != "closed" or not isinstance(event, MessagePosted), (
            "a closed ticket got a message"
        )
        if isinstance(event, TicketRated):
            assert status in ("resolved", "closed"), f"rated while {status}"
            assert before is not None and command.actor.id == before.requester.id
        if isinstance(event, MessagePosted) and event.visibility == "internal":
            assert event.author.role in STAFF, "an internal note by a non-staff author"
        if isinstance(event, SlaBreached):
            assert command.actor.role == "system"
        if isinstance(event, TicketReopened):
            assert status in ("resolved", "closed")
            status = "open"
        elif isinstance(event, TicketRaised):
            status = "open"
        elif hasattr(event, "status"):
            status = event.status
        elif type(event).__name__ == "TicketClosed":
            status = "closed"


def _check_state(state: Ticket, history: list[tuple[Event, datetime]]) -> None:
    assert state.version == len(history)
    assert state.status in STATUSES
    ids = [m.id for m in state.messages]
    assert len(ids) == len(set(ids)), "message ids repeat"
    assert all(m.visibility == "public" or m.author.role in STAFF for m in state.messages)
    assert state.rating is None or 1 <= state.rating <= 5
    assert (state.closed_at is not None) == (state.status == "closed")
    if state.status == "resolved":
        assert state.resolved_at is not None
    breaches = [e for e, _ in history if isinstance(e, SlaBreached)]
    # once per target per (re)start of that target's clock: the resolution clock restarts
    # on a reopen and on a status change from resolved/closed back to an unresolved one
    restart_at = -1
    status: str | None = None
    for i, (e, _) in enumerate(history):
        if isinstance(e, TicketReopened):
            restart_at, status = i, "open"
        elif isinstance(e, StatusChanged):
            if status in ("resolved", "closed") and e.status not in ("resolved", "closed"):
                restart_at = i
            status = e.status
        elif isinstance(e, TicketRaised):
            status = "open"
        elif isinstance(e, TicketClosed):
            status = "closed"
    first = [e for e in breaches if e.target == "first_response"]
    resolution = [e for e in breaches if e.target == "resolution"]
    # a period's miss may be recorded after the restart (it was noted when the clock
    # stopped, before a sweep saw it): periods are told apart by their due times
    restarted = history[restart_at][1] if restart_at >= 0 else None
    current = [e for e in resolution if restarted is None or e.due_at >= restarted]
    assert len(first) <= 1 and len(current) <= 1
    assert len({e.due_at for e in resolution}) == len(resolution), "a due time recorded twice"


def _run(
    raise_cmd: RaiseTicket, steps: list[tuple[Command, timedelta]]
) -> tuple[Ticket, list[tuple[Event, datetime]]]:
    history: list[tuple[Event, datetime]] = []
    state: Ticket | None = None
    try:
        events = decide(None, raise_cmd)
    except DomainError:
        events = decide(None, msgspec.structs.replace(raise_cmd, close_immediately=False))
    for e in events:
        history.append((e, T0))
        state = evolve(state, e, T0)
    now = T0
    for command, gap in steps:
        now += gap
        command = _with_now(command, now)
        before = state
        try:
            emitted = decide(state, command)
        except DomainError:
            continue  # a refused command changes nothing; anything else is a bug
        _check_emitted(before, command, emitted)
        for e in emitted:
            history.append((e, now))
            state = evolve(state, e, now)
        assert state is not None
        _check_state(state, history)
    assert state is not None
    return state, history


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(scenarios())
def test_random_command_sequences_never_break_an_invariant(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    state, history = _run(*scenario)
    assert fold(history) == state, "fold(events) differs from stepwise evolve"


@PROPERTY
@given(scenarios())
def test_fold_is_deterministic(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    _, history = _run(*scenario)
    assert fold(history) == fold(list(history))
    assert fold(iter(history)) == fold(history)


@PROPERTY
@given(scenarios())
def test_every_emitted_event_round_trips_through_json(
    scenario: tuple[RaiseTicket, list[tuple[Command, timedelta]]],
) -> None:
    state, history = _run(*scenario)
    decoded = []
    for event, at in history:
        raw = event_json.encode(event)
        back = event_decoder.decode(raw)
        assert back == event and type(back) is type(event)
        assert msgspec.json.decode(raw)["type"] == type(event).__name__
        decoded.append((back, at))
    assert fold(decoded) == state


@settings(max_examples=300, deadline=None)
@given(
    actor=actors,
    subject=st.text(max_size=250),
    description=st.text(max_size=60),
    priority=st.none() | st.sampled_from(PRIORITIES),
)
def test_raise_only_ever_fails_with_a_domain_error(
    actor: Any, subject: str, description: str, priority: Any
) -> None:
    command = RaiseTicket(
        actor=actor,
        now=T0,
        ticket_id=5,
        subject=subject,
        description=description,
        category_id=1,
        sla_policy=POLICY,
        priority=priority,
    )
    try:
        (event,) = decide(None, command)
    except DomainError:
        return
    assert isinstance(event, TicketRaised)
    assert 1 <= len(event.subject) <= 200 and event.subject.strip() == event.subject
    assert event.priority == (priority or "medium")
    assert event_decoder.decode(event_json.encode(event)) == event
