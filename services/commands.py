"""The command service: load a stream, decide, append with the expected version, retry.

Every API (native and dialects) goes through here, so the rules for concurrency,
If-Match, idempotency and reference-data checks exist once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

import asyncpg
import msgspec

from domain import ticket as domain
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
    DomainError,
    IdempotencyKeyReused,
    InvalidInput,
    TicketNotFound,
    VersionMismatch,
)
from domain.events import (
    Actor,
    BodyType,
    Event,
    ExternalAttachment,
    Priority,
    SlaTarget,
    SlaTargets,
    Status,
    Visibility,
)
from services import idempotency
from services.eventstore import (
    ConcurrencyConflict,
    EventStore,
    IdempotencyRace,
    IdempotencyRecord,
    Metadata,
    NewEvent,
    RecordedEvent,
)
from services.groupappend import GroupAppender
from services.groupread import GroupReader

log = logging.getLogger("ticketing.commands")

MAX_ATTEMPTS = 8
# Conflicts are retried optimistically this many times; after that the command waits its
# turn on the stream's row lock (load, decide and append under SELECT ... FOR UPDATE), so a
# hot ticket with dozens of concurrent writers still makes progress for every one of them
# instead of failing whoever keeps losing the race.
OPTIMISTIC_ATTEMPTS = 3
CLIENT_CLOCK_SKEW = timedelta(minutes=5)  # tolerated lead of a client-supplied time
# The earliest client-supplied time taken: older mail is not a reply to a ticket kept here,
# and 0001-01-01 00:00 UTC reads back from PostgreSQL as -infinity, which no fold orders.
EARLIEST_CLIENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
# Ticket and message ids are taken from their sequences this many at a time (one round
# trip per block). Ticket ids are shown to people, so their blocks stay small (a restart
# leaves a short gap); message ids are not, and a block of 16 cost a message 2.5% of the
# API's CPU under load (py-spy, 64 connections).
TICKET_ID_BLOCK = 16
MESSAGE_ID_BLOCK = 64
NEW_ID_ATTEMPTS = 3  # a raise whose id turns out to be taken retries under a fresh one


class Waker(Protocol):
    async def wake(self, events: Sequence[RecordedEvent]) -> None: ...


class Context(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks, and the request facts that go into every event's metadata."""

    actor: Actor
    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    dialect: str | None = None
    idempotency_key: str | None = None
    # A digest of what was asked (method, route, body); a reused key must match it.
    request_fingerprint: bytes | None = None
    expected_version: int | None = None  # from If-Match
    occurred_at: datetime | None = None  # client-supplied time where a dialect allows it


class IdBlock:
    """Ids taken from a sequence ``size`` at a time: one round trip per block, not per id.

    Ids stay unique and, within this process, increasing; a block's unused ids are lost
    when the process stops (sequences never promised gap-free ids).
    """

    def __init__(self, pool: asyncpg.Pool, sequence: str, size: int) -> None:
        self.pool = pool
        self.size = max(1, size)
        self._sql = f"SELECT nextval('{sequence}') AS id FROM generate_series(1, $1)"
        self._ids: deque[int] = deque()
        self._lock = asyncio.Lock()

    async def next(self) -> int:
        while not self._ids:
            async with self._lock:
                if not self._ids:
                    rows = await self.pool.fetch(self._sql, self.size)
                    self._ids.extend(sorted(int(r["id"]) for r in rows))
        return self._ids.popleft()


class _NextId:
    """An id a command takes from ``sequence`` once, with its first read of the stream."""

    __slots__ = ("sequence", "value")

    def __init__(self, sequence: str) -> None:
        self.sequence = sequence
        self.value: int | None = None


class CommandResult(msgspec.Struct, frozen=True):
    ticket: domain.Ticket
    events: list[RecordedEvent]
    replayed: bool = False

    @property
    def version(self) -> int:
        return self.ticket.version


def fingerprint(*parts: object) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\x1f")
    return h.digest()


class CommandService:
    def __init__(
        self,
        pool: asyncpg.Pool,
        sla_policy: dict[Priority, SlaTargets],
        *,
        waker: Waker | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
        clock: Callable[[], datetime] | None = None,
        grouped: bool = True,
    ) -> None:
        self.pool = pool
        self.store = EventStore(pool)
        # concurrent commands' reads and appends share statements (groupread, groupappend)
        self.reader = GroupReader(self.store) if grouped else None
        self.appender = GroupAppender(self.store) if grouped else None
        self.sla_policy: dict[str, SlaTargets] = {str(k): v for k, v in sla_policy.items()}
        self.waker = waker
        self.on_outcome = on_outcome
        self.clock = clock or (lambda: datetime.now(UTC))
        self._known_categories: set[int] = set()
        self._ticket_ids = IdBlock(pool, "ticket_id_seq", TICKET_ID_BLOCK)
        self._id_blocks = {"message_id_seq": IdBlock(pool, "message_id_seq", MESSAGE_ID_BLOCK)}

    # --- reads used by commands and single-ticket queries ------------------------------

    async def load(self, ticket_id: int) -> tuple[domain.Ticket | None, list[RecordedEvent]]:
        events = await self.store.read_stream(ticket_id)
        return domain.fold((e.event, e.occurred_at) for e in events), events

    async def load_ticket(self, ticket_id: int) -> domain.Ticket | None:
        """The ticket folded from its events, for showing it (``load`` without the events)."""
        if self.reader is not None:  # shares a statement with concurrent reads
            return domain.fold((await self.reader.read(ticket_id)).facts)
        return domain.fold(await self.store.read_facts(ticket_id))

    # --- commands ----------------------------------------------------------------------

    async def raise_ticket(
        self,
        ctx: Context,
        *,
        subject: str,
        description: str,
        category_id: int,
        priority: Priority | None = None,
        attachments: Sequence[str] = (),
        requester: Actor | None = None,
        close_immediately: bool = False,
        resolution: str | None = None,
        resolution_type: str | None = None,
        resolution_subject: str | None = None,
    ) -> CommandResult:
        replay = await self._replay(ctx)
        if replay is not None:
            return replay
        await self._check_category(category_id)
        await self._check_attachments(attachments, ctx.actor)
        ticket_id = await self._ticket_ids.next()

        def make(now: datetime) -> Command:
            return RaiseTicket(
                actor=ctx.actor,
                now=now,
                ticket_id=ticket_id,
                subject=subject,
                description=description,
                category_id=category_id,
                sla_policy=self.sla_policy,
                priority=priority,
                attachments=list(attachments),
                requester=requester,
                close_immediately=close_immediately,
                resolution=resolution,
                resolution_type=resolution_type,
                resolution_subject=resolution_subject,
            )

        for _ in range(NEW_ID_ATTEMPTS - 1):
            try:
                return await self._execute(ticket_id, make, ctx, new_stream=True)
            except ConcurrencyConflict:
                # the id is taken (the sequence was moved back, e.g. by a bulk import):
                # nothing was appended, so raise the ticket under a fresh id
                ticket_id = await self._ticket_ids.next()
        return await self._execute(ticket_id, make, ctx, new_stream=True)

    async def post_message(
        self,
        ctx: Context,
        ticket_id: int,
        *,
        body: str,
        body_type: BodyType = "plain",
        visibility: Visibility = "public",
        attachments: Sequence[str] = (),
        external_attachments: Sequence[ExternalAttachment] = (),
        as_requester: bool = False,
    ) -> CommandResult:
        replay = await self._replay(ctx)
        if replay is not None:
            return replay
        await self._check_attachments(attachments, ctx.actor)
        # the message id is taken in the round trip that first reads the ticket's stream
        message_id = _NextId("message_id_seq")

        def make(now: datetime) -> Command:
            assert message_id.value is not None
            return PostMessage(
                actor=ctx.actor,
                now=now,
                message_id=message_id.value,
                body=body,
                body_type=body_type,
                visibility=visibility,
                attachments=list(attachments),
                external_attachments=list(external_attachments),
                as_requester=as_requester,
            )

        return await self._execute(ticket_id, make, ctx, next_id=message_id)

    async def assign(self, ctx: Context, ticket_id: int, *, assignee: str) -> CommandResult:
        return await self._simple(
            ctx, ticket_id, lambda now: AssignTicket(actor=ctx.actor, now=now, assignee=assignee)
        )

    async def change_status(
        self, ctx: Context, ticket_id: int, *, status: Status, reason: str | None = None
    ) -> CommandResult:
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: ChangeStatus(actor=ctx.actor, now=now, status=status, reason=reason),
        )

    async def assign_and_change_status(
        self,
        ctx: Context,
        ticket_id: int,
        *,
        assignee: str,
        status: Status,
        reason: str | None = None,
    ) -> CommandResult:
        """Assign, then change the status, as one command: both or (either refused)
        neither, under one Idempotency-Key (backend's PUT carries both)."""
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: [
                AssignTicket(actor=ctx.actor, now=now, assignee=assignee),
                ChangeStatus(actor=ctx.actor, now=now, status=status, reason=reason),
            ],
        )

    async def change_priority(
        self, ctx: Context, ticket_id: int, *, priority: Priority
    ) -> CommandResult:
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: ChangePriority(
                actor=ctx.actor, now=now, priority=priority, sla_policy=self.sla_policy
            ),
        )

    async def close(
        self,
        ctx: Context,
        ticket_id: int,
        *,
        resolution: str | None = None,
        resolution_type: str | None = None,
        resolution_subject: str | None = None,
    ) -> CommandResult:
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: CloseTicket(
                actor=ctx.actor,
                now=now,
                resolution=resolution,
                resolution_type=resolution_type,
                resolution_subject=resolution_subject,
            ),
        )

    async def reopen(self, ctx: Context, ticket_id: int, *, reason: str) -> CommandResult:
        return await self._simple(
            ctx, ticket_id, lambda now: ReopenTicket(actor=ctx.actor, now=now, reason=reason)
        )

    async def rate(
        self, ctx: Context, ticket_id: int, *, rating: int, comment: str | None = None
    ) -> CommandResult:
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: RateTicket(actor=ctx.actor, now=now, rating=rating, comment=comment),
        )

    async def record_sla_breach(
        self, ctx: Context, ticket_id: int, *, target: SlaTarget
    ) -> CommandResult:
        return await self._simple(
            ctx,
            ticket_id,
            lambda now: RecordSlaBreach(actor=ctx.actor, now=now, target=target),
        )

    # --- machinery ---------------------------------------------------------------------

    async def _simple(
        self, ctx: Context, ticket_id: int, make: Callable[[datetime], Command | list[Command]]
    ) -> CommandResult:
        replay = await self._replay(ctx)
        if replay is not None:
            return replay
        return await self._execute(ticket_id, make, ctx)

    async def _execute(
        self,
        ticket_id: int,
        make: Callable[[datetime], Command | list[Command]],
        ctx: Context,
        *,
        new_stream: bool = False,
        next_id: _NextId | None = None,
    ) -> CommandResult:
        names = ["unknown"]
        try:
            for attempt in range(MAX_ATTEMPTS):
                locked = not new_stream and attempt >= OPTIMISTIC_ATTEMPTS
                try:
                    if locked:
                        async with self.pool.acquire() as conn, conn.transaction():
                            await conn.execute(
                                "SELECT 1 FROM streams WHERE stream_id = $1 FOR UPDATE", ticket_id
                            )
                            result = await self._attempt(
                                ticket_id, make, ctx, new_stream, names, conn, next_id
                            )
                    elif new_stream or (self.reader is not None and not ctx.idempotency_key):
                        # the read (if any) from the pool, the append with the group
                        result = await self._attempt(
                            ticket_id, make, ctx, new_stream, names, None, next_id
                        )
                    else:  # the read and the append on one connection: one checkout
                        async with self.pool.acquire() as conn:
                            result = await self._attempt(
                                ticket_id, make, ctx, new_stream, names, conn, next_id
                            )
                except ConcurrencyConflict:
                    if ctx.expected_version is not None:
                        raise VersionMismatch(
                            "the ticket changed while this request was processed; "
                            "fetch it again and retry"
                        ) from None
                    if new_stream:
                        raise
                    self._outcome(names[0], "retried")
                    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                    continue
                except IdempotencyRace:
                    replay = await self._replay(ctx)
                    if replay is None:  # pragma: no cover - the winner's row must exist
                        raise
                    return replay
                if result.events:
                    self._outcome(names[0], "ok")
                    await self._wake(result.events)  # after commit, never inside the lock
                else:
                    self._outcome(names[0], "noop")
                return result
            raise ConcurrencyConflict()
        except Exception as exc:
            if (
                ctx.idempotency_key
                and isinstance(exc, DomainError | ConcurrencyConflict)
                and not isinstance(exc, IdempotencyKeyReused)
            ):
                # A concurrent request with the same key may have committed first, and its
                # events are why this one was refused (closing a ticket it just closed, a
                # stale If-Match): a repeat answers as the first did (SPEC section 4).
                replay = await self._replay(ctx)
                if replay is not None:
                    self._outcome(names[0], "replayed")
                    return replay
            kind = getattr(exc, "kind", "error")
            self._outcome(names[0], str(kind))
            raise

    async def _attempt(
        self,
        ticket_id: int,
        make: Callable[[datetime], Command | list[Command]],
        ctx: Context,
        new_stream: bool,
        names: list[str],
        conn: asyncpg.Connection | None,
        next_id: _NextId | None = None,
    ) -> CommandResult:
        """One load-decide-append; ConcurrencyConflict when another writer got in first."""
        state: domain.Ticket | None = None
        prev_hash: bytes | None = None
        if not new_stream:
            # a fresh id comes with the first read; a retry keeps it
            fresh = next_id if next_id is not None and next_id.value is None else None
            if conn is None and self.reader is not None:
                stream = await self.reader.read(ticket_id)
                if fresh is not None:
                    fresh.value = await self._id_blocks[fresh.sequence].next()
            else:
                stream = await self.store.read_for_decision(
                    ticket_id, fresh.sequence if fresh is not None else None, conn=conn
                )
                if fresh is not None:
                    fresh.value = stream.next_id
            state = domain.fold(stream.facts)
            if state is None:
                raise TicketNotFound(f"ticket {ticket_id} not found")
            prev_hash = stream.last_hash
        version = state.version if state is not None else 0
        now = self.clock()
        if state is not None and ctx.actor.role != "system":
            domain.check_access(state, ctx.actor)
        client_at = None
        if ctx.occurred_at is not None:
            client_at = self._client_time(ctx.occurred_at, state, now)
        if ctx.expected_version is not None and ctx.expected_version != version:
            raise VersionMismatch(
                f"the ticket is at version {version}, not {ctx.expected_version}; "
                "fetch it again and retry"
            )
        made = make(now)
        # several commands decide in turn on the state the earlier ones leave, and their
        # events go in one append: all of them, or (any refusal) none
        steps = made if isinstance(made, list) else [made]
        names[0] = "+".join(type(c).__name__ for c in steps)
        events: list[Event] = domain.decide(state, steps[0])
        after, applied = state, 0
        for command in steps[1:]:  # a later one decides on the state the earlier ones leave
            for step_event in events[applied:]:
                after = domain.evolve(after, step_event, client_at or now)
            applied = len(events)
            events += domain.decide(after, command)
        if not events:
            assert state is not None
            await self._remember_noop(ctx, ticket_id, version, conn)
            return CommandResult(ticket=state, events=[])
        at = client_at or now
        meta = Metadata(
            actor=ctx.actor,
            request_id=ctx.request_id,
            correlation_id=ctx.correlation_id or ctx.request_id,
            causation_id=ctx.causation_id,
            idempotency_key=ctx.idempotency_key,
            dialect=ctx.dialect,
        )
        new = [NewEvent(event=e, metadata=meta, occurred_at=at) for e in events]
        idem = self._idempotency_record(ctx, version, len(events))
        if conn is None and idem is None and self.appender is not None:
            prepared = self.store.prepare(ticket_id, version, prev_hash, new, now)
            recorded = await self.appender.append(prepared)
        else:
            recorded = await self.store.append(
                ticket_id, version, prev_hash, new, idempotency=idem, recorded_at=now, conn=conn
            )
        ticket = state
        for e in recorded:
            ticket = domain.evolve(ticket, e.event, e.occurred_at)
        assert ticket is not None
        return CommandResult(ticket=ticket, events=recorded)

    @staticmethod
    def _client_time(at: datetime, state: domain.Ticket | None, now: datetime) -> datetime:
        """The time to record for a client-supplied one. It may lie in the past (replies
        imported from mail keep their date) but not in the future: that would reorder the
        ticket's history. A lead within the clock skew is recorded as now."""
        if at > now + CLIENT_CLOCK_SKEW:
            raise InvalidInput("the date lies in the future", field="date")
        if at < EARLIEST_CLIENT_TIME:
            raise InvalidInput("the date lies before 1970", field="date")
        if state is not None and at < state.created_at:
            # a reply cannot predate its ticket: the history would read out of order. A
            # date names a minute, so the minute the ticket was raised in counts as then.
            if at >= state.created_at.replace(second=0, microsecond=0):
                return state.created_at
            raise InvalidInput(
                "the date lies before the ticket was raised "
                f"({state.created_at.astimezone(UTC).strftime('%Y-%m-%d %H:%M')} UTC)",
                field="date",
            )
        return min(at, now)

    def _idempotency_record(
        self, ctx: Context, version: int, count: int
    ) -> IdempotencyRecord | None:
        if not ctx.idempotency_key:
            return None
        return IdempotencyRecord(
            principal=f"{ctx.actor.role}:{ctx.actor.id}",
            key=ctx.idempotency_key,
            request_hash=ctx.request_fingerprint or b"",
            result={"first_version": version + 1, "last_version": version + count},
        )

    async def _remember_noop(
        self, ctx: Context, ticket_id: int, version: int, conn: asyncpg.Connection | None
    ) -> None:
        """Keep the Idempotency-Key of a command that changed nothing: reused with another
        request it is refused, repeated it answers the same (the ticket at ``version``)."""
        idem = self._idempotency_record(ctx, version, 0)
        if idem is None:
            return
        try:
            # the command's own connection (and transaction) when it has one
            async with contextlib.nullcontext(conn) if conn else self.pool.acquire() as c:
                await idempotency.remember(
                    c,
                    idem.principal,
                    idem.key,
                    idem.request_hash,
                    idem.result,
                    stream_id=ticket_id,
                )
        except idempotency.KeyTaken:
            raise IdempotencyRace() from None

    async def _replay(self, ctx: Context) -> CommandResult | None:
        """The first result for a reused Idempotency-Key, or None if the key is new."""
        if not ctx.idempotency_key:
            return None
        first = await idempotency.find(
            self.pool,
            f"{ctx.actor.role}:{ctx.actor.id}",
            ctx.idempotency_key,
            ctx.request_fingerprint or b"",
            now=self.clock(),
        )
        if first is None:
            return None
        assert first.stream_id is not None  # the fingerprint names a command's route
        result = first.result
        events = await self.store.read_stream(first.stream_id)
        upto = [e for e in events if e.version <= result["last_version"]]
        ticket = domain.fold((e.event, e.occurred_at) for e in upto)
        assert ticket is not None
        mine = [e for e in upto if e.version >= result["first_version"]]
        return CommandResult(ticket=ticket, events=mine, replayed=True)

    async def _check_category(self, category_id: int) -> None:
        if category_id in self._known_categories:
            return
        if await self.pool.fetchval("SELECT 1 FROM categories WHERE id = $1", category_id):
            self._known_categories.add(category_id)
            return
        raise InvalidInput(f"category {category_id} does not exist", field="category_id")

    async def _check_attachments(self, ids: Sequence[str], actor: Actor) -> None:
        if not ids:
            return
        found = await self.pool.fetch(
            "SELECT id, uploader_id, uploader_role FROM attachments WHERE id = ANY($1::text[])",
            list(ids),
        )
        # A customer references only their own uploads (a file id alone grants no access).
        if actor.role == "customer":
            found = [
                r for r in found if (r["uploader_id"], r["uploader_role"]) == (actor.id, "customer")
            ]
        missing = sorted(set(ids) - {r["id"] for r in found})
        if missing:
            raise InvalidInput(
                f"unknown attachment id(s): {', '.join(missing)}", field="attachments"
            )

    async def _wake(self, events: Sequence[RecordedEvent]) -> None:
        if self.waker is None:
            return
        try:
            await self.waker.wake(events)
        except Exception:  # the log is the truth; a lost wake-up is caught up later
            log.warning("worker wake-up failed; the periodic catch-up will apply the events")

    def _outcome(self, name: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(name, outcome)


Wake = Callable[[Sequence[RecordedEvent]], Awaitable[None]]
