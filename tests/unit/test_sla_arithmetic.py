"""Due-time arithmetic of the SLA clock, folded from events: pauses, reopen, priority, DST.

Targets are elapsed time outside on-hold; a time zone only matters for "due today".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import sla
from domain.commands import RecordSlaBreach
from domain.events import (
    Actor,
    Event,
    MessagePosted,
    PriorityChanged,
    SlaBreached,
    SlaTargets,
    StatusChanged,
    TicketClosed,
    TicketRaised,
    TicketReopened,
)
from domain.sla import end_of_local_day, parse_targets
from domain.ticket import Ticket, decide, evolve, fold
from services.settings import SettingsError, load_settings

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
CUSTOMER = Actor(id="cust-1", role="customer")
AGENT = Actor(id="agent-1", role="agent")
SYSTEM = Actor(id="system", role="system")
POLICY = parse_targets("urgent=1h/4h,high=4h/24h,medium=12h/72h,low=24h/168h")


def raised(priority: str = "high") -> TicketRaised:
    return TicketRaised(
        ticket_id=1,
        subject="s",
        description="d",
        category_id=1,
        priority=priority,  # type: ignore[arg-type]
        requester=CUSTOMER,
        sla=POLICY[priority],  # type: ignore[index]
    )


def ticket(*events: tuple[Event, datetime]) -> Ticket:
    state = fold(events)
    assert state is not None
    return state


def hold(at: datetime, previous: str = "open") -> tuple[Event, datetime]:
    return (StatusChanged(status="on_hold", previous=previous), at)  # type: ignore[arg-type]


def unhold(at: datetime, new: str = "in_progress") -> tuple[Event, datetime]:
    return (StatusChanged(status=new, previous="on_hold"), at)  # type: ignore[arg-type]


def breaches(state: Ticket, now: datetime) -> list[Event]:
    out: list[Event] = []
    for target in ("first_response", "resolution"):
        out += decide(state, RecordSlaBreach(actor=SYSTEM, now=now, target=target))
    return out


# --- due times at raise ------------------------------------------------------------------


def test_due_times_are_the_priority_targets_from_the_raise() -> None:
    t = ticket((raised("high"), T0))
    assert t.sla.first_response_due_at == T0 + 4 * H
    assert t.sla.resolution_due_at == T0 + 24 * H


def test_nothing_is_breached_one_second_before_the_due_time() -> None:
    t = ticket((raised("urgent"), T0))
    assert breaches(t, T0 + H - timedelta(seconds=1)) == []


def test_first_response_breaches_exactly_at_its_due_time_with_that_due_time() -> None:
    t = ticket((raised("urgent"), T0))
    assert breaches(t, T0 + H) == [SlaBreached(target="first_response", due_at=T0 + H)]


def test_both_targets_breach_when_both_have_passed() -> None:
    t = ticket((raised("urgent"), T0))
    assert breaches(t, T0 + 5 * H) == [
        SlaBreached(target="first_response", due_at=T0 + H),
        SlaBreached(target="resolution", due_at=T0 + 4 * H),
    ]


def test_a_recorded_breach_is_never_recorded_again() -> None:
    t = ticket(
        (raised("urgent"), T0), (SlaBreached(target="first_response", due_at=T0 + H), T0 + H)
    )
    assert breaches(t, T0 + 2 * H) == []
    assert breaches(t, T0 + 100 * H) == [SlaBreached(target="resolution", due_at=T0 + 4 * H)]


# --- on hold -------------------------------------------------------------------------------


def test_on_hold_time_extends_both_due_times() -> None:
    t = ticket((raised("high"), T0), hold(T0 + H), unhold(T0 + 3 * H))
    assert t.sla.first_response_due_at == T0 + 6 * H
    assert t.sla.resolution_due_at == T0 + 26 * H


def test_a_ticket_on_hold_never_breaches_however_long_it_waits() -> None:
    t = ticket((raised("urgent"), T0), hold(T0 + 10 * M))
    assert t.sla.paused
    assert breaches(t, T0 + 1000 * H) == []


def test_after_resuming_only_the_time_outside_hold_counts() -> None:
    t = ticket((raised("urgent"), T0), hold(T0 + 30 * M), unhold(T0 + 5 * H))
    # 30 min before the hold; 30 more after 05:00 reaches the 1 h target.
    assert breaches(t, T0 + 5 * H + 29 * M) == []
    assert breaches(t, T0 + 5 * H + 30 * M) == [
        SlaBreached(target="first_response", due_at=T0 + 5 * H + 30 * M)
    ]


def test_several_holds_add_up() -> None:
    t = ticket(
        (raised("high"), T0),
        hold(T0 + H),
        unhold(T0 + 2 * H),
        hold(T0 + 3 * H, previous="in_progress"),
        unhold(T0 + 6 * H),
    )
    assert t.sla.resolution_due_at == T0 + 28 * H


def test_resolving_a_ticket_on_hold_counts_the_hold_until_resolution() -> None:
    t = ticket(
        (raised("high"), T0),
        hold(T0 + H),
        (StatusChanged(status="resolved", previous="on_hold"), T0 + 2 * H),
    )
    assert not t.sla.paused
    assert t.sla.paused_s == 3600
    assert breaches(t, T0 + 1000 * H) == []


@given(
    holds=st.lists(
        st.tuples(st.integers(1, 10_000), st.integers(0, 10_000)), min_size=0, max_size=8
    )
)
def test_resolution_due_is_raise_plus_target_plus_all_hold_time(
    holds: list[tuple[int, int]],
) -> None:
    events: list[tuple[Event, datetime]] = [(raised("low"), T0)]
    at = T0
    held = 0
    for gap, length in holds:
        at += timedelta(seconds=gap)
        events.append(hold(at, previous="in_progress"))
        at += timedelta(seconds=length)
        events.append(unhold(at))
        held += length
    t = ticket(*events)
    assert t.sla.resolution_due_at == T0 + timedelta(seconds=168 * 3600 + held)
    assert t.sla.first_response_due_at == T0 + timedelta(seconds=24 * 3600 + held)


# --- first response ------------------------------------------------------------------------


def test_first_public_agent_message_meets_first_response() -> None:
    t = ticket(
        (raised("urgent"), T0), (MessagePosted(message_id=1, author=AGENT, body="hi"), T0 + 10 * M)
    )
    assert t.sla.first_response_at == T0 + 10 * M
    assert breaches(t, T0 + 2 * H) == []
    assert breaches(t, T0 + 4 * H) == [SlaBreached(target="resolution", due_at=T0 + 4 * H)]


@pytest.mark.parametrize(
    "message",
    [
        MessagePosted(message_id=1, author=AGENT, body="note", visibility="internal"),
        MessagePosted(message_id=1, author=CUSTOMER, body="anyone?"),
    ],
    ids=["internal note", "customer message"],
)
def test_internal_notes_and_customer_messages_do_not_meet_first_response(
    message: MessagePosted,
) -> None:
    t = ticket((raised("urgent"), T0), (message, T0 + 10 * M))
    assert t.sla.first_response_at is None
    assert breaches(t, T0 + H)[0] == SlaBreached(target="first_response", due_at=T0 + H)


def test_a_later_agent_message_does_not_move_the_first_response_time() -> None:
    m1 = MessagePosted(message_id=1, author=AGENT, body="a")
    m2 = MessagePosted(message_id=2, author=AGENT, body="b")
    t = ticket((raised(), T0), (m1, T0 + M), (m2, T0 + 2 * M))
    assert t.sla.first_response_at == T0 + M


# --- priority change -----------------------------------------------------------------------


def test_priority_change_keeps_the_start_and_swaps_the_targets() -> None:
    change = PriorityChanged(priority="urgent", previous="low", sla=POLICY["urgent"])
    t = ticket((raised("low"), T0), (change, T0 + 30 * M))
    assert t.sla.first_response_due_at == T0 + H
    assert t.sla.resolution_due_at == T0 + 4 * H


def test_priority_raised_after_its_new_due_time_breaches_at_once_with_the_new_due() -> None:
    change = PriorityChanged(priority="urgent", previous="low", sla=POLICY["urgent"])
    t = ticket((raised("low"), T0), (change, T0 + 2 * H))
    assert breaches(t, T0 + 2 * H) == [SlaBreached(target="first_response", due_at=T0 + H)]


def test_priority_lowered_moves_the_due_times_later() -> None:
    change = PriorityChanged(priority="low", previous="urgent", sla=POLICY["low"])
    t = ticket((raised("urgent"), T0), (change, T0 + 30 * M))
    assert breaches(t, T0 + 2 * H) == []
    assert t.sla.first_response_due_at == T0 + 24 * H


def test_priority_change_keeps_hold_time() -> None:
    change = PriorityChanged(priority="urgent", previous="high", sla=POLICY["urgent"])
    t = ticket((raised("high"), T0), hold(T0 + 10 * M), unhold(T0 + 70 * M), (change, T0 + 80 * M))
    assert t.sla.first_response_due_at == T0 + 2 * H


# --- resolve, close, reopen -----------------------------------------------------------------


def test_resolved_and_closed_tickets_never_breach() -> None:
    resolved = ticket(
        (raised("urgent"), T0), (StatusChanged(status="resolved", previous="open"), T0 + M)
    )
    closed = ticket((raised("urgent"), T0), (TicketClosed(previous="open"), T0 + M))
    assert breaches(resolved, T0 + 100 * H) == []
    assert breaches(closed, T0 + 100 * H) == []


def test_reopen_gets_a_fresh_resolution_target_from_the_reopen() -> None:
    t = ticket(
        (raised("urgent"), T0),
        (MessagePosted(message_id=1, author=AGENT, body="fixed?"), T0 + M),
        (TicketClosed(previous="open"), T0 + 2 * H),
        (TicketReopened(reason="no", previous="closed"), T0 + 50 * H),
    )
    assert t.sla.resolution_due_at == T0 + 54 * H
    assert breaches(t, T0 + 54 * H - M) == []
    assert breaches(t, T0 + 54 * H) == [SlaBreached(target="resolution", due_at=T0 + 54 * H)]


def test_reopen_after_a_resolution_breach_may_breach_resolution_again_once() -> None:
    t = ticket(
        (raised("urgent"), T0),
        (MessagePosted(message_id=1, author=AGENT, body="hi"), T0 + M),
        (SlaBreached(target="resolution", due_at=T0 + 4 * H), T0 + 4 * H),
        (StatusChanged(status="resolved", previous="open"), T0 + 5 * H),
        (TicketReopened(reason="again", previous="resolved"), T0 + 6 * H),
    )
    assert breaches(t, T0 + 10 * H) == [SlaBreached(target="resolution", due_at=T0 + 10 * H)]
    after = evolve(t, SlaBreached(target="resolution", due_at=T0 + 10 * H), T0 + 10 * H)
    assert after is not None and breaches(after, T0 + 20 * H) == []


def test_hold_before_a_reopen_does_not_extend_the_fresh_resolution_target() -> None:
    t = ticket(
        (raised("high"), T0),
        hold(T0 + H),
        unhold(T0 + 3 * H),
        (StatusChanged(status="resolved", previous="in_progress"), T0 + 4 * H),
        (StatusChanged(status="open", previous="resolved"), T0 + 10 * H),
    )
    assert t.sla.resolution_due_at == T0 + 34 * H
    t2 = evolve(t, StatusChanged(status="on_hold", previous="open"), T0 + 11 * H)
    t3 = evolve(t2, StatusChanged(status="open", previous="on_hold"), T0 + 12 * H)
    assert t3 is not None and t3.sla.resolution_due_at == T0 + 35 * H


def test_a_reopened_ticket_keeps_its_first_response_breach() -> None:
    t = ticket(
        (raised("urgent"), T0),
        (SlaBreached(target="first_response", due_at=T0 + H), T0 + H),
        (TicketClosed(previous="open"), T0 + 2 * H),
        (TicketReopened(reason="x", previous="closed"), T0 + 3 * H),
    )
    assert t.sla.breached_first_response
    assert [e.target for e in breaches(t, T0 + 100 * H)] == ["resolution"]  # type: ignore[union-attr]


# --- time zones: targets are elapsed time, "due today" is local ---------------------------


def test_due_times_are_elapsed_time_across_a_dst_change() -> None:
    # Europe/Berlin springs forward at 01:00 UTC on 2024-03-31: still exactly 4 h later.
    raised_at = datetime(2024, 3, 30, 23, 30, tzinfo=UTC)
    t = ticket((raised("high"), raised_at))
    assert t.sla.first_response_due_at - raised_at == 4 * H


@pytest.mark.parametrize(
    ("now", "zone", "end"),
    [
        # 23-hour day in Berlin: tomorrow starts 22:00 UTC.
        (
            datetime(2024, 3, 31, 1, 0, tzinfo=UTC),
            "Europe/Berlin",
            datetime(2024, 3, 31, 22, 0, tzinfo=UTC),
        ),
        # 25-hour day in Berlin: tomorrow starts 23:00 UTC.
        (
            datetime(2024, 10, 27, 1, 0, tzinfo=UTC),
            "Europe/Berlin",
            datetime(2024, 10, 27, 23, 0, tzinfo=UTC),
        ),
        # New York, spring forward on 2024-03-10: midnight is 04:00 UTC on the 11th.
        (
            datetime(2024, 3, 10, 12, 0, tzinfo=UTC),
            "America/New_York",
            datetime(2024, 3, 11, 4, 0, tzinfo=UTC),
        ),
        # Santiago skips local midnight on 2024-09-08: the day starts at 01:00 (-03) = 04:00 UTC.
        (
            datetime(2024, 9, 7, 16, 0, tzinfo=UTC),
            "America/Santiago",
            datetime(2024, 9, 8, 4, 0, tzinfo=UTC),
        ),
        # Late evening UTC is already tomorrow in Tokyo.
        (
            datetime(2024, 1, 1, 20, 0, tzinfo=UTC),
            "Asia/Tokyo",
            datetime(2024, 1, 2, 15, 0, tzinfo=UTC),
        ),
        (datetime(2024, 1, 1, 20, 0, tzinfo=UTC), "UTC", datetime(2024, 1, 2, 0, 0, tzinfo=UTC)),
    ],
)
def test_end_of_local_day_is_the_next_local_midnight(
    now: datetime, zone: str, end: datetime
) -> None:
    assert end_of_local_day(now, zone) == end


def test_due_today_on_a_short_dst_day_in_a_non_utc_zone() -> None:
    now = datetime(2024, 3, 31, 8, 0, tzinfo=UTC)  # 10:00 CEST
    end = end_of_local_day(now, "Europe/Berlin")
    raised_at = datetime(2024, 3, 31, 0, 0, tzinfo=UTC)
    low = ticket((raised("low"), raised_at))  # first response due 2024-04-01 00:00 UTC
    high = ticket((raised("high"), raised_at))  # first response due 04:00 UTC
    # 02:00 CEST on April 1 is tomorrow in Berlin; 06:00 CEST on March 31 is today.
    assert low.sla.first_response_due_at >= end
    assert high.sla.first_response_due_at < end
    # 21:59 UTC is 23:59 CEST (today); 22:00 UTC is midnight (tomorrow).
    assert (
        datetime(2024, 3, 31, 21, 59, tzinfo=UTC) < end <= datetime(2024, 3, 31, 22, 0, tzinfo=UTC)
    )


# --- targets are validated at start -----------------------------------------------------


def test_targets_accept_every_unit() -> None:
    got = parse_targets("urgent=30s/90m,high=2h/1d,medium=12h/3d,low=1d/7d")
    assert got["urgent"] == SlaTargets(30, 5400)
    assert got["low"] == SlaTargets(86400, 7 * 86400)


@pytest.mark.parametrize(
    "value",
    [
        "urgent=1h",
        "urgent=1x/4h",
        "critical=1h/4h",
        "urgent=0h/4h",
        "urgent=1h/-4h",
        "urgent:1h/4h",
        "urgent=h/4h",
        "low=99999999d/99999999d",  # would overflow the due time's date arithmetic
        "low=1h/3651d",
        "urgent=1h/4h,urgent=2h/5h",
    ],
)
def test_a_bad_sla_targets_setting_stops_start_up_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings({"TICKETING_SLA_TARGETS": value})
    assert "TICKETING_SLA_TARGETS" in str(exc.value)


def test_a_partial_sla_targets_setting_keeps_defaults_for_the_rest() -> None:
    settings = load_settings({"TICKETING_SLA_TARGETS": "urgent=2s/4s"})
    assert settings.sla_policy["urgent"] == SlaTargets(2, 4)
    assert settings.sla_policy["low"] == SlaTargets(24 * 3600, 168 * 3600)


def test_sweep_interval_must_be_positive() -> None:
    with pytest.raises(SettingsError, match="TICKETING_SLA_SWEEP_SECONDS"):
        load_settings({"TICKETING_SLA_SWEEP_SECONDS": "0"})
    with pytest.raises(SettingsError, match="TICKETING_SLA_SWEEP_SECONDS"):
        load_settings({"TICKETING_SLA_SWEEP_SECONDS": "soon"})


def test_sla_clock_pause_is_idempotent() -> None:
    clock = sla.start(SlaTargets(60, 120), T0)
    once = sla.pause(clock, T0 + M)
    assert sla.pause(once, T0 + 2 * M) == once
    assert sla.resume(clock, T0 + M) == clock
