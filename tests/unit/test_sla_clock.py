"""SLA clocks folded from events: pauses, first response, reopen, retarget, targets, local days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ticket_spec import AGENT, CUSTOMER, POLICY, SYSTEM, T0, closed, message, raised, status

from domain import sla
from domain.commands import RecordSlaBreach
from domain.events import Event, PriorityChanged, SlaBreached, SlaTargets, TicketReopened
from domain.ticket import Ticket, decide, fold

H = timedelta(hours=1)
MEDIUM = POLICY["medium"]  # 12h / 72h


def fold_at(*steps: tuple[Event, datetime]) -> Ticket:
    state = fold(steps)
    assert state is not None
    return state


def test_a_fresh_ticket_is_due_by_its_priority_targets() -> None:
    t = fold_at((raised(), T0))
    assert t.sla.first_response_due_at == T0 + 12 * H
    assert t.sla.resolution_due_at == T0 + 72 * H


def test_time_on_hold_extends_both_due_times() -> None:
    t = fold_at(
        (raised(), T0),
        (status("on_hold", "open"), T0 + 1 * H),
        (status("in_progress", "on_hold"), T0 + 3 * H),
    )
    assert t.sla.first_response_due_at == T0 + 14 * H
    assert t.sla.resolution_due_at == T0 + 74 * H
    assert not t.sla.paused


def test_two_holds_add_up() -> None:
    t = fold_at(
        (raised(), T0),
        (status("on_hold", "open"), T0 + 1 * H),
        (status("open", "on_hold"), T0 + 2 * H),
        (status("on_hold", "open"), T0 + 5 * H),
        (status("resolved", "on_hold"), T0 + 8 * H),
    )
    assert t.sla.resolution_due_at == T0 + (72 + 1 + 3) * H


def test_no_breach_is_recorded_while_on_hold_even_past_the_due_time() -> None:
    t = fold_at((raised(), T0), (status("on_hold", "open"), T0 + 1 * H))
    far = T0 + 1000 * H
    assert decide(t, RecordSlaBreach(actor=SYSTEM, now=far, target="resolution")) == []
    assert decide(t, RecordSlaBreach(actor=SYSTEM, now=far, target="first_response")) == []


def test_a_breach_after_a_hold_is_due_at_the_extended_time() -> None:
    t = fold_at(
        (raised(), T0),
        (status("on_hold", "open"), T0 + 1 * H),
        (status("open", "on_hold"), T0 + 3 * H),
    )
    assert decide(t, RecordSlaBreach(actor=SYSTEM, now=T0 + 13 * H, target="first_response")) == []
    assert decide(t, RecordSlaBreach(actor=SYSTEM, now=T0 + 14 * H, target="first_response")) == [
        SlaBreached(target="first_response", due_at=T0 + 14 * H)
    ]


def test_the_first_public_agent_message_meets_the_first_response_target() -> None:
    t = fold_at((raised(), T0), (message(AGENT, message_id=1), T0 + 2 * H))
    assert t.sla.first_response_at == T0 + 2 * H


def test_a_later_agent_message_does_not_move_the_first_response() -> None:
    t = fold_at(
        (raised(), T0),
        (message(AGENT, message_id=1), T0 + 2 * H),
        (message(AGENT, message_id=2), T0 + 5 * H),
    )
    assert t.sla.first_response_at == T0 + 2 * H


def test_an_internal_note_does_not_meet_the_first_response_target() -> None:
    t = fold_at((raised(), T0), (message(AGENT, visibility="internal"), T0 + 2 * H))
    assert t.sla.first_response_at is None
    assert decide(t, RecordSlaBreach(actor=SYSTEM, now=T0 + 12 * H, target="first_response"))


def test_a_customers_message_does_not_meet_the_first_response_target() -> None:
    t = fold_at((raised(), T0), (message(CUSTOMER), T0 + 2 * H))
    assert t.sla.first_response_at is None


def test_a_reopen_gives_a_fresh_resolution_target() -> None:
    t = fold_at(
        (raised(), T0),
        (status("on_hold", "open"), T0 + 1 * H),
        (status("resolved", "on_hold"), T0 + 2 * H),
        (TicketReopened(reason="again", previous="resolved"), T0 + 100 * H),
    )
    assert t.status == "open"
    assert t.sla.resolution_due_at == T0 + 100 * H + 72 * H
    assert t.sla.stopped_at is None


def test_a_reopen_clears_a_recorded_resolution_breach_so_the_new_target_can_breach() -> None:
    t = fold_at(
        (raised(), T0),
        (SlaBreached(target="resolution", due_at=T0 + 72 * H), T0 + 72 * H),
        (status("resolved", "open"), T0 + 80 * H),
        (TicketReopened(reason="again", previous="resolved"), T0 + 90 * H),
    )
    assert not t.sla.breached_resolution
    cmd = RecordSlaBreach(actor=SYSTEM, now=T0 + 162 * H, target="resolution")
    assert decide(t, cmd) == [SlaBreached(target="resolution", due_at=T0 + 162 * H)]


def test_putting_a_resolved_ticket_back_in_progress_restarts_the_resolution_clock() -> None:
    t = fold_at(
        (raised(), T0),
        (status("resolved", "open"), T0 + 1 * H),
        (status("in_progress", "resolved"), T0 + 10 * H),
    )
    assert t.sla.resolution_due_at == T0 + 10 * H + 72 * H
    assert t.resolved_at is None


def test_a_priority_change_retargets_from_the_original_start() -> None:
    urgent = POLICY["urgent"]  # 1h / 4h
    t = fold_at(
        (raised(), T0),
        (PriorityChanged(priority="urgent", previous="medium", sla=urgent), T0 + 0.5 * H),
    )
    assert t.priority == "urgent"
    assert t.sla.first_response_due_at == T0 + 1 * H
    assert t.sla.resolution_due_at == T0 + 4 * H


def test_breach_flags_survive_in_the_folded_state() -> None:
    t = fold_at((raised(), T0), (SlaBreached(target="first_response", due_at=T0 + 12 * H), T0))
    assert t.sla.breached_first_response and not t.sla.breached_resolution
    assert t.version == 2


# --- targets missed between two sweeps ---------------------------------------------------
# A sweep runs every few seconds; a target that passes unmet and is then met late (or the
# ticket paused, resolved, closed or retargeted) before the next sweep is still a breach.


def breach(t: Ticket, target: str, now: datetime) -> list[Event]:
    return list(decide(t, RecordSlaBreach(actor=SYSTEM, now=now, target=target)))  # type: ignore[arg-type]


def test_a_first_response_met_late_is_still_recorded_as_a_breach_once() -> None:
    t = fold_at((raised(), T0), (message(AGENT, message_id=1), T0 + 13 * H))
    assert t.sla.first_response_at == T0 + 13 * H
    [event] = breach(t, "first_response", T0 + 13 * H)
    assert event == SlaBreached(target="first_response", due_at=T0 + 12 * H)
    after = fold_at(
        (raised(), T0), (message(AGENT, message_id=1), T0 + 13 * H), (event, T0 + 14 * H)
    )
    assert breach(after, "first_response", T0 + 100 * H) == []


def test_a_first_response_met_in_time_is_no_breach() -> None:
    t = fold_at((raised(), T0), (message(AGENT, message_id=1), T0 + 11 * H))
    assert breach(t, "first_response", T0 + 100 * H) == []


@pytest.mark.parametrize("final", ["resolved", "closed"])
def test_a_ticket_resolved_or_closed_late_still_owes_its_breaches(final: str) -> None:
    end = status("resolved", "open") if final == "resolved" else closed()
    t = fold_at((raised(), T0), (end, T0 + 73 * H))
    assert breach(t, "resolution", T0 + 74 * H) == [
        SlaBreached(target="resolution", due_at=T0 + 72 * H)
    ]
    assert breach(t, "first_response", T0 + 74 * H) == [
        SlaBreached(target="first_response", due_at=T0 + 12 * H)
    ]


def test_a_ticket_resolved_in_time_owes_nothing() -> None:
    t = fold_at(
        (raised(), T0), (message(AGENT), T0 + 1 * H), (status("resolved", "open"), T0 + 2 * H)
    )
    assert breach(t, "resolution", T0 + 1000 * H) == []
    assert breach(t, "first_response", T0 + 1000 * H) == []


def test_a_hold_that_starts_after_the_due_time_does_not_hide_the_breach() -> None:
    t = fold_at((raised(), T0), (status("on_hold", "open"), T0 + 12.5 * H))
    assert breach(t, "first_response", T0 + 13 * H) == [
        SlaBreached(target="first_response", due_at=T0 + 12 * H)
    ]
    assert breach(t, "resolution", T0 + 13 * H) == []  # not due yet, and now paused


def test_a_priority_change_after_the_due_time_keeps_the_breach() -> None:
    low = POLICY["low"]  # 24h / 168h: the new due times lie ahead
    t = fold_at(
        (raised(), T0),
        (PriorityChanged(priority="low", previous="medium", sla=low), T0 + 12.5 * H),
    )
    assert t.sla.first_response_due_at == T0 + 24 * H
    assert breach(t, "first_response", T0 + 13 * H) == [
        SlaBreached(target="first_response", due_at=T0 + 12 * H)
    ]


def test_time_spent_resolved_does_not_count_against_the_first_response() -> None:
    t = fold_at(
        (raised(), T0),
        (status("resolved", "open"), T0 + 1 * H),
        (TicketReopened(reason="not fixed", previous="resolved"), T0 + 50 * H),
    )
    assert t.sla.first_response_due_at == T0 + (12 + 49) * H
    assert breach(t, "first_response", T0 + 50 * H) == []


def test_a_missed_resolution_is_recorded_after_a_reopen_and_the_new_period_can_breach() -> None:
    steps: list[tuple[Event, datetime]] = [
        (raised(), T0),
        (message(AGENT), T0 + 1 * H),
        (status("resolved", "open"), T0 + 73 * H),  # 1 h late, before any sweep
        (TicketReopened(reason="again", previous="resolved"), T0 + 74 * H),
    ]
    t = fold_at(*steps)
    [old] = breach(t, "resolution", T0 + 75 * H)
    assert old == SlaBreached(target="resolution", due_at=T0 + 72 * H)
    t = fold_at(*steps, (old, T0 + 75 * H))
    assert breach(t, "resolution", T0 + 100 * H) == []  # the new period runs to 146 h
    assert breach(t, "resolution", T0 + 146 * H) == [
        SlaBreached(target="resolution", due_at=T0 + 146 * H)
    ]


# --- targets from settings ------------------------------------------------------------


def test_parse_targets_reads_every_priority_and_unit() -> None:
    got = sla.parse_targets("urgent=30m/2h,high=1h/1d,medium=3600s/3d,low=1d/7d")
    assert got == {
        "urgent": SlaTargets(1800, 7200),
        "high": SlaTargets(3600, 86400),
        "medium": SlaTargets(3600, 3 * 86400),
        "low": SlaTargets(86400, 7 * 86400),
    }


def test_parse_targets_keeps_defaults_for_priorities_not_named() -> None:
    got = sla.parse_targets("urgent=30m/2h")
    assert got["urgent"] == SlaTargets(1800, 7200)
    assert got["low"] == SlaTargets(24 * 3600, 168 * 3600)


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("urgent=1h/4h,critical=1h/2h", "'critical=1h/2h'"),
        ("urgent=1h", "'urgent=1h'"),
        ("urgent", "'urgent'"),
        ("high=4x/24h", "'high=4x/24h'"),
        ("high=4h/0h", "'high=4h/0h'"),
        ("high=-1h/2h", "'high=-1h/2h'"),
    ],
)
def test_parse_targets_errors_name_the_bad_entry(spec: str, named: str) -> None:
    with pytest.raises(ValueError, match="TICKETING_SLA_TARGETS") as info:
        sla.parse_targets(spec)
    assert named in str(info.value)


def test_parse_duration_rejects_garbage_naming_it() -> None:
    assert sla.parse_duration(" 90m ") == 5400
    with pytest.raises(ValueError, match="'ninety'"):
        sla.parse_duration("ninety")


# --- the local day ----------------------------------------------------------------------


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "now", "end"),
    [
        # Warsaw springs forward on 2024-03-31 (CET +1 -> CEST +2): a 23-hour day
        ("Europe/Warsaw", utc(2024, 3, 30, 12), utc(2024, 3, 30, 23)),
        ("Europe/Warsaw", utc(2024, 3, 31, 10), utc(2024, 3, 31, 22)),
        # New York falls back on 2024-11-03 (EDT -4 -> EST -5): a 25-hour day
        ("America/New_York", utc(2024, 11, 3, 3, 30), utc(2024, 11, 3, 4)),
        ("America/New_York", utc(2024, 11, 3, 12), utc(2024, 11, 4, 5)),
        # Santiago springs forward AT midnight on 2024-09-08: 00:00 does not exist there,
        # the day starts at 01:00 -03 (04:00 UTC)
        ("America/Santiago", utc(2024, 9, 7, 12), utc(2024, 9, 8, 4)),
        ("UTC", utc(2024, 1, 1, 23, 59), utc(2024, 1, 2)),
    ],
)
def test_end_of_local_day_follows_daylight_saving(zone: str, now: datetime, end: datetime) -> None:
    got = sla.end_of_local_day(now, zone)
    assert got == end
    assert got > now
    assert got.utcoffset() == timedelta(0)  # safe to subtract and compare with anything


def test_the_local_day_spanning_a_dst_change_is_23_or_25_hours_long() -> None:
    start_warsaw = sla.end_of_local_day(utc(2024, 3, 30, 12), "Europe/Warsaw")
    assert sla.end_of_local_day(start_warsaw, "Europe/Warsaw") - start_warsaw == 23 * H
    start_ny = sla.end_of_local_day(utc(2024, 11, 2, 12), "America/New_York")
    assert sla.end_of_local_day(start_ny, "America/New_York") - start_ny == 25 * H
