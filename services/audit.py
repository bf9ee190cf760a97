"""Audit: prove the log is intact, replay any ticket to any moment, export the events.

``verify`` recomputes every stream's hash chain (and that versions are gap-free and the
``streams`` table agrees with the log), rebuilds every projection into a scratch schema
and compares it row by row with the live tables. ``export`` writes JSON Lines with the
stored payload bytes verbatim, so the hashes can be re-checked offline. ``state_as_of``
folds a ticket's events up to a moment or a version.
"""

from __future__ import annotations

import asyncio
import io
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import IO, Any

import asyncpg
import msgspec

from domain.errors import InvalidInput, TicketNotFound
from domain.events import EVENT_TYPES
from domain.ticket import Ticket, fold
from services.commands import CommandService
from services.db import SERVER_SETTINGS
from services.eventstore import COLUMNS, EventStore, RecordedEvent, row_to_event, verify_chain
from services.settings import Settings

FEED_MAX_LIMIT = 1000
# Columns that may differ between the live read models and a fresh replay without
# anything being wrong: bookkeeping times stamped with now() when a checkpoint moves, and
# the runner's record of an event it cannot apply (projections/failures.py).
IGNORED_COLUMNS: dict[str, frozenset[str]] = {
    "projection_checkpoints": frozenset(
        {"updated_at", "last_error", "failing_position", "failing_since"}
    ),
}
MAX_REPORTED = 50  # mismatching rows reported per table


# --- the event JSON shape ------------------------------------------------------------------


class AuditEvent(msgspec.Struct, frozen=True):
    """One stored event as auditors see it (hashes hex; data/metadata as stored)."""

    position: int
    stream_id: int
    version: int
    type: str
    schema: int
    data: Any
    metadata: Any
    occurred_at: datetime
    recorded_at: datetime
    hash: str
    prev_hash: str | None


def audit_event_of_row(row: asyncpg.Record, *, raw: bool = False) -> AuditEvent:
    """The audit shape of a stored event row, without decoding its payload into a domain
    event: auditors must be able to read (and export) a row that no longer decodes, an
    altered one above all, to see what it holds."""
    data_raw, meta_raw = row["data"], row["metadata"]
    if raw:
        data: Any = msgspec.Raw(data_raw.encode())
        meta: Any = msgspec.Raw(meta_raw.encode())
    else:
        data = msgspec.json.decode(data_raw)
        meta = msgspec.json.decode(meta_raw)
    prev = row["prev_hash"]
    return AuditEvent(
        position=row["position"],
        stream_id=row["stream_id"],
        version=row["version"],
        type=row["type"],
        schema=row["schema"],
        data=data,
        metadata=meta,
        occurred_at=row["occurred_at"],
        recorded_at=row["recorded_at"],
        hash=bytes(row["hash"]).hex(),
        prev_hash=None if prev is None else bytes(prev).hex(),
    )


# --- the global feed --------------------------------------------------------------------------

_FEED_SQL = f"""
    SELECT {COLUMNS} FROM events
    WHERE (transaction_id, position) > ($1::xid8, $2::bigint)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
      AND ($4::text[] IS NULL OR type = ANY($4::text[]))
      AND ($5::timestamptz IS NULL OR recorded_at >= $5::timestamptz)
      AND ($6::timestamptz IS NULL OR recorded_at < $6::timestamptz)
    ORDER BY transaction_id, position
    LIMIT $3
"""


class FeedPage(msgspec.Struct, frozen=True):
    items: list[AuditEvent]
    # Pass back as ``after`` for the next page (the last position returned, or the
    # ``after`` given when nothing new has committed yet: poll again later).
    next_cursor: int
    has_more: bool


async def feed(
    pool: asyncpg.Pool,
    *,
    after: int = 0,
    limit: int = 100,
    types: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> FeedPage:
    """Events after position ``after`` in commit-safe global order (never skips a late
    commit: only transactions older than every running one are returned)."""
    if after < 0:
        raise InvalidInput("after must be a position (0 or more)", field="after")
    if not 1 <= limit <= FEED_MAX_LIMIT:
        raise InvalidInput(f"limit must be from 1 to {FEED_MAX_LIMIT}", field="limit")
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be later than since", field="until")
    checkpoint: tuple[int, int] = (0, 0)
    if after > 0:
        found = await EventStore(pool).checkpoint_of_position(after)
        if found is None:
            raise InvalidInput(
                f"after={after} is not the position of a stored event; pass back a "
                "next_cursor from a previous page (or 0 to start)",
                field="after",
            )
        checkpoint = found
    rows = await pool.fetch(
        _FEED_SQL, checkpoint[0], checkpoint[1], limit, list(types) if types else None, since, until
    )
    items = [audit_event_of_row(r) for r in rows]
    return FeedPage(
        items=items,
        next_cursor=items[-1].position if items else after,
        has_more=len(items) == limit,
    )


# --- a ticket's history and its state at a moment ------------------------------------------


def _store(source: CommandService | asyncpg.Pool) -> EventStore:
    return source.store if isinstance(source, CommandService) else EventStore(source)


async def raw_ticket_events(pool: asyncpg.Pool, ticket_id: int) -> list[AuditEvent]:
    """A ticket's stored events as auditors see them (not decoded: see audit_event_of_row)."""
    rows = await pool.fetch(
        f"SELECT {COLUMNS} FROM events WHERE stream_id = $1 ORDER BY version", ticket_id
    )
    if not rows:
        raise TicketNotFound(f"ticket {ticket_id} not found")
    return [audit_event_of_row(r) for r in rows]


async def ticket_events(
    source: CommandService | asyncpg.Pool, ticket_id: int
) -> list[RecordedEvent]:
    events = await _store(source).read_stream(ticket_id)
    if not events:
        raise TicketNotFound(f"ticket {ticket_id} not found")
    return events


def fold_upto(
    events: Sequence[RecordedEvent],
    ticket_id: int,
    as_of: datetime | None = None,
    version: int | None = None,
) -> Ticket:
    """Fold the stream prefix up to ``version`` or up to the moment ``as_of``.

    ``as_of`` is compared with recorded-at (when the service knew of the event; the
    client-suppliable occurred-at may lie), so a moment between two events gives the
    state after the earlier one. Before the first event the ticket did not exist (404).
    """
    if as_of is not None and version is not None:
        raise InvalidInput("give either as_of or version, not both", field="as_of")
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("as_of needs a time zone, e.g. 2024-05-01T12:00:00Z", field="as_of")
    prefix: list[RecordedEvent] = []
    if version is not None:
        if version < 1:
            raise InvalidInput("version must be 1 or more", field="version")
        if version > len(events):
            raise TicketNotFound(
                f"ticket {ticket_id} has no version {version}; it is at version {len(events)}"
            )
        prefix = list(events[:version])
    elif as_of is not None:
        for e in events:
            if e.recorded_at > as_of:
                break
            prefix.append(e)
        if not prefix:
            raise TicketNotFound(f"ticket {ticket_id} did not exist yet at {as_of.isoformat()}")
    else:
        prefix = list(events)
    state = fold((e.event, e.occurred_at) for e in prefix)
    if state is None:  # pragma: no cover - a stream always starts with TicketRaised
        raise TicketNotFound(f"ticket {ticket_id} not found")
    return state


async def state_as_of(
    source: CommandService | asyncpg.Pool,
    ticket_id: int,
    as_of: datetime | None = None,
    version: int | None = None,
) -> Ticket:
    """The ticket as it was at ``as_of`` (or at ``version``; neither: as it is now)."""
    return fold_upto(await ticket_events(source, ticket_id), ticket_id, as_of, version)


# --- export ---------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


async def _iter_events(
    conn: asyncpg.Connection, ticket: int | None, since: datetime | None
) -> AsyncIterator[asyncpg.Record]:
    """All committed events (of one ticket, recorded since a moment), streamed by a cursor.

    Ordered by (transaction_id, position): commit order, as the feed.
    """
    clauses = ["transaction_id < pg_snapshot_xmin(pg_current_snapshot())"]
    args: list[Any] = []
    if ticket is not None:
        args.append(ticket)
        clauses.append(f"stream_id = ${len(args)}")
    if since is not None:
        args.append(since)
        clauses.append(f"recorded_at >= ${len(args)}")
    order = "version" if ticket is not None else "transaction_id, position"
    sql = f"SELECT {COLUMNS} FROM events WHERE {' AND '.join(clauses)} ORDER BY {order}"
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        async for row in conn.cursor(sql, *args, prefetch=5000):
            yield row


async def export(
    dsn: str, out: IO[str] | IO[bytes], ticket: int | None = None, since: datetime | None = None
) -> int:
    """Write events as JSON Lines (one event per line, stored bytes verbatim); return count."""
    conn = await asyncpg.connect(dsn)
    n = 0
    binary = isinstance(out, io.BufferedIOBase | io.RawIOBase) or "b" in getattr(out, "mode", "")
    try:
        buf: list[bytes] = []
        async for row in _iter_events(conn, ticket, since):
            buf.append(_encoder.encode(audit_event_of_row(row, raw=True)))
            n += 1
            if len(buf) >= 1000:
                _write(out, buf, binary)
                buf = []
        _write(out, buf, binary)
    finally:
        await conn.close()
    return n


def _write(out: IO[Any], lines: list[bytes], binary: bool) -> None:
    if not lines:
        return
    chunk = b"\n".join(lines) + b"\n"
    out.write(chunk if binary else chunk.decode())


# --- verify ---------------------------------------------------------------------------------


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    kind: str  # chain | version | stream | decode | projection | unsettled
    message: str
    ticket: int | None = None
    position: int | None = None
    table: str | None = None


class VerifyReport(msgspec.Struct):
    streams: int = 0
    events: int = 0
    tables: dict[str, int] = {}  # table -> rows compared
    problems: list[Problem] = []
    # events newer than the replay (committed during the verify, or not yet commit-safe)
    not_replayed: int = 0
    chain_seconds: float = 0.0
    projection_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        compared = ", ".join(f"{t} {n} rows" for t, n in sorted(self.tables.items()))
        lines = [
            f"hash chains: {self.streams} streams, {self.events} events "
            f"checked in {self.chain_seconds:.1f}s",
            f"projections: {compared} compared with a fresh replay in "
            f"{self.projection_seconds:.1f}s"
            if compared
            else "projections: not compared",
        ]
        if self.not_replayed:
            lines.append(
                f"note: {self.not_replayed} event(s) committed during the check were not "
                "replayed; their rows were compared at the replay's checkpoint"
            )
        if self.ok:
            lines.append("OK: the log is intact and every projection equals a replay")
        else:
            lines.append(f"FAILED: {len(self.problems)} problem(s)")
            lines.extend(f"  - {p.message}" for p in self.problems)
        return "\n".join(lines)


async def verify_chains(conn: asyncpg.Connection, report: VerifyReport) -> None:
    """Every stream's hash chain, gap-free versions, and the streams table's head."""
    heads: dict[int, tuple[int, bytes]] = {}
    seen: set[int] = set()

    def finish(stream_id: int, events: list[RecordedEvent], broken: bool) -> None:
        report.streams += 1
        seen.add(stream_id)
        if not broken:
            problem = verify_chain(events)
            if problem is not None:
                kind = "version" if "expected" in problem else "chain"
                bad = _first_bad(events)
                report.problems.append(
                    Problem(
                        kind=kind,
                        message=f"ticket {stream_id}: {problem}",
                        ticket=stream_id,
                        position=bad,
                    )
                )
                return
        if broken:  # reported as undecodable; its head cannot be compared
            return
        head = heads.get(stream_id)
        last = events[-1] if events else None
        if last is not None and head != (last.version, last.hash):
            report.problems.append(
                Problem(
                    kind="stream",
                    message=(
                        f"ticket {stream_id}: the streams table says version "
                        f"{head[0] if head else None} but the log ends at version {last.version} "
                        f"(position {last.position})"
                    ),
                    ticket=stream_id,
                    position=last.position,
                )
            )

    sql = f"SELECT {COLUMNS} FROM events ORDER BY stream_id, version"
    # One snapshot for the heads and the events, so a concurrent append is seen in both
    # or neither. Read-only: no xid, so commit-safe readers are not held back meanwhile.
    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        for r in await conn.fetch("SELECT stream_id, version, last_hash FROM streams"):
            heads[r["stream_id"]] = (r["version"], bytes(r["last_hash"]))
        current: int | None = None
        events: list[RecordedEvent] = []
        broken = False
        async for row in conn.cursor(sql, prefetch=10_000):
            sid = row["stream_id"]
            if sid != current:
                if current is not None:
                    finish(current, events, broken)
                current, events, broken = sid, [], False
            report.events += 1
            if broken:
                continue
            try:
                events.append(row_to_event(row))
            except Exception as exc:  # a payload altered into something undecodable
                broken = True
                why = str(exc)
                if row["type"] not in EVENT_TYPES:
                    why = f"{row['type']!r} is not an event type"
                report.problems.append(
                    Problem(
                        kind="decode",
                        message=(
                            f"ticket {sid}: event version {row['version']} (position "
                            f"{row['position']}) cannot be decoded: {why}"
                        ),
                        ticket=sid,
                        position=row["position"],
                    )
                )
        if current is not None:
            finish(current, events, broken)
    for sid in sorted(set(heads) - seen):
        report.problems.append(
            Problem(
                kind="stream",
                message=f"ticket {sid}: the streams table has version {heads[sid][0]} "
                "but the log has no events for it",
                ticket=sid,
            )
        )


def _first_bad(events: Sequence[RecordedEvent]) -> int | None:
    """The position of the first event whose chain check fails (for the report)."""
    for i in range(1, len(events) + 1):
        if verify_chain(events[:i]) is not None:
            return events[i - 1].position
    return None


async def _columns(conn: asyncpg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        schema,
        table,
    )
    return [(r["attname"], r["type"]) for r in rows]


async def _primary_key(conn: asyncpg.Connection, schema: str, table: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT a.attname FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
        "WHERE n.nspname = $1 AND c.relname = $2 AND i.indisprimary ORDER BY k.ord",
        schema,
        table,
    )
    return [r["attname"] for r in rows]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A stored fold written before the positional format (projections/statecodec.py) is a
# msgpack map (first byte 0x80-0x8f, 0xde or 0xdf); a replay always writes the current
# format, so such a live state cannot be compared byte for byte. It is rewritten the next
# time its ticket changes (or by a rebuild); until then the row's other columns, all
# derived from that state, are still compared.
_EARLIER_STATE = "get_byte(l.state, 0) BETWEEN 128 AND 143 OR get_byte(l.state, 0) IN (222, 223)"


def _comparable(alias: str, column: str, type_: str, table: str = "") -> str:
    # json has no equality operator; compare its text (the projections write it
    # deterministically from the events).
    ref = f"{alias}.{_q(column)}"
    if table == "ticket_summaries" and column == "state" and alias == "l":
        return f"(CASE WHEN {_EARLIER_STATE} THEN r.state ELSE l.state END)"
    return f"{ref}::text" if type_ == "json" else ref


def _ticket_of(table: str, key: dict[str, Any], row: dict[str, Any] | None) -> int | None:
    if row is not None and isinstance(row.get("ticket_id"), int):
        return int(row["ticket_id"])
    if "ticket_id" in key:
        return int(key["ticket_id"])
    if table.startswith("ticket_summaries") and "id" in key:
        return int(key["id"])
    return None


async def compare_table(
    conn: asyncpg.Connection, live_schema: str, replay_schema: str, table: str
) -> tuple[int, list[Problem]]:
    """Row-by-row comparison of one read model; returns (rows, problems)."""
    live_cols = await _columns(conn, live_schema, table)
    replay_cols = await _columns(conn, replay_schema, table)
    if not live_cols:
        return 0, [
            Problem(
                kind="projection",
                table=table,
                message=f"{table}: the live schema {live_schema!r} has no such table",
            )
        ]
    if [c for c, _ in live_cols] != [c for c, _ in replay_cols]:
        return 0, [
            Problem(
                kind="projection",
                table=table,
                message=f"{table}: live and replayed tables have different columns",
            )
        ]
    ignored = IGNORED_COLUMNS.get(table, frozenset())
    cols = [(c, t) for c, t in live_cols if c not in ignored]
    pk = await _primary_key(conn, live_schema, table) or [c for c, _ in cols]
    live_t = f"{_q(live_schema)}.{_q(table)}"
    replay_t = f"{_q(replay_schema)}.{_q(table)}"
    on = " AND ".join(f"l.{_q(k)} = r.{_q(k)}" for k in pk)
    lrow = ", ".join(_comparable("l", c, t, table) for c, t in cols)
    rrow = ", ".join(_comparable("r", c, t) for c, t in cols)
    # bytea/tsvector/xid8 columns are rendered to text by to_jsonb for the report.
    # The comparison is a CTE of its own: planned for every row (a hash join), not for
    # the first few that the LIMIT asks for, which made the planner walk both tables
    # through their indexes (several times slower when, as it should be, nothing differs).
    sql = f"""
        WITH differing AS MATERIALIZED (
            SELECT CASE WHEN l.{_q(pk[0])} IS NULL THEN NULL ELSE to_jsonb(l)::text END AS live,
                   CASE WHEN r.{_q(pk[0])} IS NULL THEN NULL ELSE to_jsonb(r)::text END AS replay
            FROM {live_t} l FULL JOIN {replay_t} r ON {on}
            WHERE ROW({lrow}) IS DISTINCT FROM ROW({rrow})
        )
        SELECT live, replay FROM differing LIMIT {MAX_REPORTED + 1}
    """
    rows = await conn.fetch(sql)
    count = await conn.fetchval(f"SELECT count(*) FROM {replay_t}")
    problems: list[Problem] = []
    for r in rows[:MAX_REPORTED]:
        live = msgspec.json.decode(r["live"]) if r["live"] else None
        replay = msgspec.json.decode(r["replay"]) if r["replay"] else None
        either = live or replay or {}
        key = {k: either.get(k) for k in pk}
        ticket = _ticket_of(table, key, either)
        position = either.get("position") or either.get("last_position")
        key_text = ", ".join(f"{k}={v}" for k, v in key.items())
        who = f"ticket {ticket}" if ticket is not None else key_text
        if live is None:
            what = "is missing from the live table"
        elif replay is None:
            what = "is in the live table but not in a replay of the log"
        else:
            diff = sorted(c for c, _ in cols if live.get(c) != replay.get(c))
            shown = "; ".join(
                f"{c}: live {_short(live.get(c))} / replay {_short(replay.get(c))}" for c in diff
            )
            what = f"differs from a replay ({shown})"
        event = f" (event at position {position})" if position is not None else ""
        problems.append(
            Problem(
                kind="projection",
                table=table,
                ticket=ticket,
                position=position if isinstance(position, int) else None,
                message=f"{table}: {who} [{key_text}]{event} {what}",
            )
        )
    if len(rows) > MAX_REPORTED:
        problems.append(
            Problem(
                kind="projection",
                table=table,
                message=f"{table}: more than {MAX_REPORTED} rows differ; only the first shown",
            )
        )
    return int(count or 0), problems


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


async def _checkpoints(conn: asyncpg.Connection, schema: str) -> dict[str, tuple[int, int]]:
    rows = await conn.fetch(
        f"SELECT name, transaction_id, position FROM {_q(schema)}.projection_checkpoints"
    )
    return {r["name"]: (int(r["transaction_id"]), int(r["position"])) for r in rows}


async def _wait_commit_safe(pool: asyncpg.Pool, seconds: float) -> bool:
    """Wait (bounded) until every committed event is old enough for commit-safe readers."""
    deadline = time.monotonic() + seconds
    while True:
        pending = await pool.fetchval(
            "SELECT EXISTS (SELECT 1 FROM events "
            "WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))"
        )
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def _events_after(conn: asyncpg.Connection, checkpoints: dict[str, tuple[int, int]]) -> int:
    """Events in the log beyond the least advanced replayed checkpoint."""
    if not checkpoints:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    least = min(checkpoints.values())
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE (transaction_id, position) > ($1::xid8, $2::bigint)",
            least[0],
            least[1],
        )
    )


SETTLE_ROUNDS = 5


async def _hold_at_one_checkpoint(
    conn: asyncpg.Connection, live: str, scratch: str
) -> dict[str, tuple[int, int]] | None:
    """Bring the live and the replayed tables to one checkpoint and open a read-only
    repeatable-read transaction on ``conn`` that sees both there; return the checkpoints
    (None, and no transaction, if they could not be brought together).

    Comparing without this raced the live runner, which moved the live tables between the
    checkpoint check and the table reads: a healthy log reported as altered. The runner is
    held off (its lock) only while both catch up, in one repeatable-read transaction, so
    both read the same commit-safe events however fast the log grows; once the comparison's
    snapshot is taken the runner carries on, and the comparison reads the tables as they
    were at the snapshot.
    """
    from projections.rebuild import CATCH_UP_BATCH
    from projections.runner import RUNNER_LOCK, apply_next_batch

    await conn.execute("SELECT pg_advisory_lock($1)", RUNNER_LOCK)
    try:
        for _ in range(SETTLE_ROUNDS):
            async with conn.transaction(isolation="repeatable_read"):
                for schema in (live, scratch):
                    while await apply_next_batch(conn, CATCH_UP_BATCH, schema=schema, lock=False):
                        pass
                at = await _checkpoints(conn, live)
                if at != await _checkpoints(conn, scratch):
                    continue
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                if await _checkpoints(conn, live) == at:  # the snapshot is taken here
                    return at
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("ROLLBACK")
        return None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", RUNNER_LOCK)


async def verify_projections(
    dsn: str, report: VerifyReport, *, attempts: int = 3, settle_seconds: float = 30.0
) -> None:
    """Replay the whole log into a scratch schema and compare it with the live tables.

    The live projections are caught up first and again after the replay; if the log
    moved meanwhile (checkpoints differ), the replay is retried, then reported.
    """
    from projections.rebuild import READ_MODEL_TABLES, build_into_schema
    from projections.runner import LIVE_SCHEMA, catch_up

    live_schema = LIVE_SCHEMA
    # the service's session settings (JIT off: it compiled for longer than it saved here)
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=4, server_settings=dict(SERVER_SETTINGS)
    )
    assert pool is not None
    try:
        conn: asyncpg.Connection
        for attempt in range(attempts):
            scratch = f"audit_verify_{uuid.uuid4().hex[:10]}"
            try:
                # Replays read only commit-safe events (older than every running
                # transaction in the cluster); give a just-committed tail a moment.
                await _wait_commit_safe(pool, settle_seconds)
                await catch_up(pool)
                await build_into_schema(dsn, scratch)
                async with pool.acquire() as conn:
                    replay_cp = await _hold_at_one_checkpoint(conn, live_schema, scratch)
                    if replay_cp is None and attempt < attempts - 1:
                        continue
                    if replay_cp is None:
                        report.problems.append(
                            Problem(
                                kind="unsettled",
                                message=(
                                    "the log kept moving while verifying, so the projections "
                                    "could not be compared at one checkpoint; run it again"
                                ),
                            )
                        )
                        return
                    try:
                        report.not_replayed = await _events_after(conn, replay_cp)
                        for table in READ_MODEL_TABLES:
                            rows, problems = await compare_table(conn, live_schema, scratch, table)
                            report.tables[table] = rows
                            report.problems.extend(problems)
                    finally:
                        await conn.execute("ROLLBACK")  # the snapshot's read-only transaction
                return
            finally:
                async with pool.acquire() as conn:
                    await conn.execute(f"DROP SCHEMA IF EXISTS {_q(scratch)} CASCADE")
    finally:
        await pool.close()


async def verify(dsn: str, *, projections: bool = True) -> VerifyReport:
    report = VerifyReport()
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await verify_chains(conn, report)
    finally:
        await conn.close()
    report.chain_seconds = time.perf_counter() - started
    if projections:
        started = time.perf_counter()
        if any(p.kind == "decode" for p in report.problems):
            # a replay would stop at the first such event: say so, do not crash on it
            report.problems.append(
                Problem(
                    kind="projection",
                    message=(
                        "projections were not compared with a replay: the log holds "
                        "events that cannot be decoded (listed above)"
                    ),
                )
            )
        else:
            try:
                await verify_projections(dsn, report)
            except Exception as exc:  # e.g. an event altered after the chains were read
                report.problems.append(
                    Problem(
                        kind="projection",
                        message=(
                            "projections could not be compared with a replay of the log: "
                            f"{type(exc).__name__}: {exc}"
                        ),
                    )
                )
        report.projection_seconds = time.perf_counter() - started
    return report


# --- CLI entry points -----------------------------------------------------------------------


def _dsn(settings: Settings) -> str:
    if not settings.database_url:
        raise SystemExit("TICKETING_DATABASE_URL is not set: audit needs the service's database")
    return settings.database_url


def verify_main(settings: Settings, out: IO[str] = sys.stdout) -> int:
    """``ticketing audit verify``: print a summary; exit 1 on any mismatch."""
    report = asyncio.run(verify(_dsn(settings)))
    print(report.summary(), file=out)
    return 0 if report.ok else 1


def export_main(
    settings: Settings,
    ticket: int | None = None,
    since: datetime | None = None,
    out: IO[str] | IO[bytes] = sys.stdout,
) -> int:
    """``ticketing audit export [--ticket N] [--since T]``: JSON Lines on ``out``."""
    written = asyncio.run(export(_dsn(settings), out, ticket, since))
    if ticket is not None and written == 0 and since is None:
        print(f"ticketing: ticket {ticket} has no events (no such ticket)", file=sys.stderr)
        return 1
    return 0
