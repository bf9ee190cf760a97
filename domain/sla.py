"""SLA arithmetic, pure: targets, a pausable clock, due times and the end of a local day.

Targets are elapsed time (a 4 h target is 4 h of wall-clock time outside on-hold),
so daylight-saving shifts never move a due time; only "due today" depends on the zone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import msgspec

from domain.events import PRIORITIES, Priority, SlaTargets

DEFAULT_SLA_TARGETS = "urgent=1h/4h,high=4h/24h,medium=12h/72h,low=24h/168h"

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")


# A target of ten years is already no target; a much longer one would overflow the due
# time's date arithmetic and break every command and read model that computes it.
MAX_TARGET_S = 3650 * 86400


def parse_duration(text: str) -> int:
    """'90m' -> 5400 seconds; raises ValueError naming the bad text."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"bad duration {text!r}: expected a positive number with s, m, h or d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds > MAX_TARGET_S:
        raise ValueError(f"bad duration {text!r}: at most 3650d")
    return seconds


def parse_targets(spec: str) -> dict[Priority, SlaTargets]:
    """Parse 'urgent=1h/4h,high=…' into per-priority targets; every priority is required."""
    defaults = _parse(DEFAULT_SLA_TARGETS) if spec != DEFAULT_SLA_TARGETS else {}
    parsed = _parse(spec)
    merged = {**defaults, **parsed}
    missing = [p for p in PRIORITIES if p not in merged]
    if missing:
        raise ValueError(f"TICKETING_SLA_TARGETS lacks {', '.join(missing)}")
    return merged


def _parse(spec: str) -> dict[Priority, SlaTargets]:
    out: dict[Priority, SlaTargets] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not sep or name not in PRIORITIES:
            raise ValueError(
                f"TICKETING_SLA_TARGETS: bad entry {part!r}; expected PRIORITY=FIRST/RESOLUTION "
                f"with PRIORITY one of {', '.join(PRIORITIES)}"
            )
        first, slash, resolution = value.partition("/")
        if not slash:
            raise ValueError(
                f"TICKETING_SLA_TARGETS: bad entry {part!r}; expected e.g. high=4h/24h"
            )
        try:
            targets = SlaTargets(parse_duration(first), parse_duration(resolution))
        except ValueError as exc:
            raise ValueError(f"TICKETING_SLA_TARGETS: entry {part!r}: {exc}") from None
        if name in out:
            raise ValueError(f"TICKETING_SLA_TARGETS names {name} twice; which one is meant?")
        out[name] = targets
    return out


class SlaClock(msgspec.Struct, frozen=True):
    """The SLA state of one ticket.

    ``paused_s`` is all on-hold time since the ticket was raised; the resolution clock
    subtracts what had been paused before its (re)start, so a reopen starts it afresh.
    """

    targets: SlaTargets
    raised_at: datetime
    resolution_started_at: datetime
    paused_s: float = 0.0
    paused_before_resolution_s: float = 0.0
    paused_since: datetime | None = None
    first_response_at: datetime | None = None
    stopped_at: datetime | None = None  # resolved or closed: the resolution clock stops
    breached_first_response: bool = False
    breached_resolution: bool = False
    # A due time that passed unmet while the clock ran, noted when the clock stopped
    # running (the target was met late, the ticket put on hold, resolved or retargeted)
    # before a sweep recorded the breach: still a breach, to be recorded.
    first_response_missed: datetime | None = None
    resolution_missed: datetime | None = None

    # timedelta(days, seconds): the positional form costs half the keyword one, and a
    # rebuild asks for both due times of every ticket
    @property
    def first_response_due_at(self) -> datetime:
        return self.raised_at + timedelta(0, self.targets.first_response_s + self.paused_s)

    @property
    def resolution_due_at(self) -> datetime:
        paused = self.paused_s - self.paused_before_resolution_s
        return self.resolution_started_at + timedelta(0, self.targets.resolution_s + paused)

    @property
    def paused(self) -> bool:
        return self.paused_since is not None


def start(targets: SlaTargets, at: datetime) -> SlaClock:
    return SlaClock(targets=targets, raised_at=at, resolution_started_at=at)


def _running(clock: SlaClock) -> bool:
    return clock.paused_since is None and clock.stopped_at is None


def note_missed(clock: SlaClock, at: datetime) -> SlaClock:
    """Note each running target whose due time passed unmet before ``at``: called before
    a change that ends the sweep's chance to see it (met late, paused, stopped,
    retargeted)."""
    if not _running(clock):
        return clock
    changes: dict[str, datetime] = {}
    if (
        clock.first_response_at is None
        and not clock.breached_first_response
        and clock.first_response_missed is None
        and clock.first_response_due_at < at
    ):
        changes["first_response_missed"] = clock.first_response_due_at
    if (
        not clock.breached_resolution
        and clock.resolution_missed is None
        and clock.resolution_due_at < at
    ):
        changes["resolution_missed"] = clock.resolution_due_at
    return msgspec.structs.replace(clock, **changes) if changes else clock


def pause(clock: SlaClock, at: datetime) -> SlaClock:
    if clock.paused_since is not None:
        return clock
    return msgspec.structs.replace(note_missed(clock, at), paused_since=at)


def resume(clock: SlaClock, at: datetime) -> SlaClock:
    if clock.paused_since is None:
        return clock
    held = max(0.0, (at - clock.paused_since).total_seconds())
    return msgspec.structs.replace(clock, paused_since=None, paused_s=clock.paused_s + held)


def stop(clock: SlaClock, at: datetime) -> SlaClock:
    if clock.stopped_at is not None:
        return clock
    return msgspec.structs.replace(note_missed(resume(clock, at), at), stopped_at=at)


def restart_resolution(clock: SlaClock, at: datetime) -> SlaClock:
    """A reopened ticket gets a fresh resolution target from the moment it reopens; the
    time it spent resolved or closed does not count against its first response either."""
    clock = resume(clock, at)
    resolved_s = 0.0 if clock.stopped_at is None else (at - clock.stopped_at).total_seconds()
    paused_s = clock.paused_s + max(0.0, resolved_s)
    return msgspec.structs.replace(
        clock,
        resolution_started_at=at,
        paused_s=paused_s,
        paused_before_resolution_s=paused_s,
        stopped_at=None,
        breached_resolution=False,
    )


def retarget(clock: SlaClock, targets: SlaTargets, at: datetime) -> SlaClock:
    """A priority change keeps the clocks' starts and swaps the targets (a due time the
    old target had already passed stays a breach)."""
    return msgspec.structs.replace(note_missed(clock, at), targets=targets)


def meet_first_response(clock: SlaClock, at: datetime) -> SlaClock:
    if clock.first_response_at is not None:
        return clock
    return msgspec.structs.replace(note_missed(clock, at), first_response_at=at)


def record_breach(clock: SlaClock, target: str, due_at: datetime) -> SlaClock:
    """``SlaBreached(target, due_at)``: a noted miss is recorded, else the running one."""
    if target == "first_response":
        return msgspec.structs.replace(
            clock, breached_first_response=True, first_response_missed=None
        )
    if due_at == clock.resolution_missed and due_at < clock.resolution_started_at:
        # the miss of a resolution period before a reopen: the current one keeps its flag
        return msgspec.structs.replace(clock, resolution_missed=None)
    missed = None if due_at == clock.resolution_missed else clock.resolution_missed
    return msgspec.structs.replace(clock, breached_resolution=True, resolution_missed=missed)


def breach_due(clock: SlaClock, target: str, now: datetime) -> datetime | None:
    """The due time of ``target`` if it has passed unmet at ``now`` and is not yet recorded:
    a noted miss first, else the running clock's."""
    if target == "first_response":
        if clock.first_response_missed is not None:
            return clock.first_response_missed
        if not _running(clock) or clock.first_response_at is not None:
            return None
        if clock.breached_first_response:
            return None
        due = clock.first_response_due_at
    else:
        if clock.resolution_missed is not None:
            return clock.resolution_missed
        if not _running(clock) or clock.breached_resolution:
            return None
        due = clock.resolution_due_at
    return due if due <= now else None


def end_of_local_day(now: datetime, zone: str) -> datetime:
    """The first instant of tomorrow in ``zone``, in UTC (DST-correct).

    Returned in UTC on purpose: Python subtracts and compares two datetimes that share a
    ZoneInfo by wall clock, which is an hour off across a DST change. A local midnight
    that does not exist (a zone that springs forward at 00:00) resolves, with fold=0, to
    the pre-transition offset, i.e. exactly the instant the new day starts.
    """
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    tomorrow = local.date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=tz).astimezone(UTC)
