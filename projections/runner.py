"""Checkpointed catch-up: apply batches of events to the read models, exactly once.

The read models (``PROJECTIONS``) advance together: one transaction reads the next
events after their checkpoint (``EventStore.read_all``, commit-safe order), writes the
rows of every model and moves every checkpoint. A transaction-scoped advisory lock
lets one runner at a time work on the live schema, so several worker processes never
apply an event twice; a crash rolls the whole batch back, rows and checkpoint alike.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg

from domain.events import MessagePosted
from projections import counts, logs, messages, tickets
from projections.fold import Folded, count_keys, decode_state, log_record, message_record, step
from services.eventstore import EventStore, RecordedEvent

log = logging.getLogger("ticketing.projections")

LIVE_SCHEMA = "public"
RUNNER_LOCK = 7_310_101  # pg_advisory_xact_lock key guarding the live read models
DEFAULT_BATCH = 500

PROJECTIONS = (tickets, messages, logs, counts)

# read_all on an explicit connection never touches the store's pool
_READER = EventStore(cast(asyncpg.Pool, None))


class CheckpointsDiverged(RuntimeError):
    """The read models are not at one checkpoint (e.g. a model was added): rebuild them."""


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Batch:
    events: list[RecordedEvent]
    after: dict[int, Folded] = field(default_factory=dict)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    logs: list[tuple[Any, ...]] = field(default_factory=list)
    category_deltas: Counter[tuple[object, str]] = field(default_factory=Counter)
    agent_deltas: Counter[tuple[object, str]] = field(default_factory=Counter)


def fold_batch(events: list[RecordedEvent], loaded: dict[int, Folded]) -> Batch:
    """Fold ``events`` onto the loaded ticket states; collect every model's rows."""
    batch = Batch(events=events)
    states: dict[int, Folded | None] = dict(loaded)
    before_keys = {tid: count_keys(f) for tid, f in loaded.items()}
    for e in events:
        tid = e.stream_id
        if tid not in before_keys:
            before_keys[tid] = (None, None)
        folded = step(states.get(tid), e)
        states[tid] = folded
        if folded is not None:
            batch.after[tid] = folded
        if isinstance(e.event, MessagePosted) and folded is not None:
            batch.messages.append(message_record(e, e.event))
        batch.logs.append(log_record(e, folded))
    for tid, (cat0, agent0) in before_keys.items():
        cat1, agent1 = count_keys(states.get(tid))
        if cat0 != cat1:
            if cat0 is not None:
                batch.category_deltas[cat0] -= 1
            if cat1 is not None:
                batch.category_deltas[cat1] += 1
        if agent0 != agent1:
            if agent0 is not None:
                batch.agent_deltas[agent0] -= 1
            if agent1 is not None:
                batch.agent_deltas[agent1] += 1
    return batch


async def read_checkpoint(conn: asyncpg.Connection, s: str) -> tuple[int, int]:
    names = [p.NAME for p in PROJECTIONS]
    rows = await conn.fetch(
        f"SELECT name, transaction_id, position FROM {s}.projection_checkpoints "
        "WHERE name = ANY($1::text[])",
        names,
    )
    points = {(int(r["transaction_id"]), int(r["position"])) for r in rows}
    if len(rows) != len(names) or len(points) != 1:
        raise CheckpointsDiverged(
            f"projection checkpoints in schema {s} are missing or differ ({len(rows)} rows, "
            f"{len(points)} distinct); run `ticketing projections rebuild`"
        )
    return points.pop()


async def load_states(conn: asyncpg.Connection, s: str, ids: list[int]) -> dict[int, Folded]:
    out: dict[int, Folded] = {}
    for r in await tickets.load(conn, s, ids):
        out[r["id"]] = Folded(
            ticket=decode_state(r["state"]),
            message_count=r["message_count"],
            public_message_count=r["public_message_count"],
            last_activity_at=r["last_activity_at"],
            last_position=r["last_position"],
        )
    return out


async def apply_events(
    conn: asyncpg.Connection, schema: str, events: list[RecordedEvent]
) -> None:
    """Write one batch to ``schema`` and move its checkpoints; call inside a transaction."""
    s = quote_ident(schema)
    loaded = await load_states(conn, s, sorted({e.stream_id for e in events}))
    batch = fold_batch(events, loaded)
    await tickets.apply(conn, s, batch)
    await messages.apply(conn, schema, batch)
    await tickets.apply_search(conn, s, batch)
    await logs.apply(conn, schema, batch)
    await counts.apply(conn, s, batch)
    last = events[-1]
    await conn.execute(
        f"UPDATE {s}.projection_checkpoints SET transaction_id = $1::xid8, position = $2, "
        "updated_at = now() WHERE name = ANY($3::text[])",
        last.transaction_id,
        last.position,
        [p.NAME for p in PROJECTIONS],
    )


async def apply_next_batch(
    conn: asyncpg.Connection,
    batch_size: int = DEFAULT_BATCH,
    *,
    schema: str = LIVE_SCHEMA,
    lock: bool = True,
) -> int | None:
    """One transaction: the next batch after the checkpoint. 0 when caught up, None when
    another runner holds the lock."""
    s = quote_ident(schema)
    async with conn.transaction():
        if lock and not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", RUNNER_LOCK):
            return None
        checkpoint = await read_checkpoint(conn, s)
        events = await _READER.read_all(after=checkpoint, limit=batch_size, conn=conn)
        if not events:
            return 0
        await apply_events(conn, schema, events)
        return len(events)


async def catch_up(
    pool: asyncpg.Pool,
    batch_size: int = DEFAULT_BATCH,
    *,
    max_batches: int | None = None,
) -> int:
    """Apply batches until caught up (or another runner is at work); return events applied."""
    applied = 0
    batches = 0
    async with pool.acquire() as conn:
        while max_batches is None or batches < max_batches:
            n = await apply_next_batch(conn, batch_size)
            if not n:
                break
            applied += n
            batches += 1
    if applied:
        log.debug("applied %d events to the read models", applied)
    return applied
