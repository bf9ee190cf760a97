"""Helpers for the projection and worker tests: a command driver, fold comparisons, workers."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from domain import ticket as domain
from domain.errors import DomainError
from domain.events import Actor
from projections.consistency import projections_checkpoint
from projections.tickets import term_key_sql
from services.commands import CommandService, Context
from services.eventstore import EventStore

ROOT = Path(__file__).resolve().parents[2]
CUSTOMERS = [Actor(id=f"cust-{i}", role="customer", name=f"Customer {i}") for i in range(4)]
AGENTS = [Actor(id=f"agent-{i}", role="agent", name=f"Agent {i}") for i in range(3)]
WORDS = "printer invoice refund password login outage laptop billing crash slow email".split()


async def proj_drive(
    service: CommandService, tickets: int, *, seed: int = 7, steps: int = 6
) -> list[int]:
    """Raise ``tickets`` tickets and put each through a random mix of every command."""
    rng = random.Random(seed)
    ids: list[int] = []
    for n in range(tickets):
        cust = rng.choice(CUSTOMERS)
        raised = await service.raise_ticket(
            Context(actor=cust),
            subject=f"{rng.choice(WORDS)} problem {n}",
            description=" ".join(rng.choices(WORDS, k=8)),
            category_id=rng.randint(1, 5),
            priority=rng.choice(["low", "medium", "high", "urgent"]),
        )
        tid = raised.ticket.id
        ids.append(tid)
        for _ in range(rng.randint(0, steps)):
            agent = rng.choice(AGENTS)
            op = rng.randrange(9)
            try:
                if op == 0:
                    await service.post_message(
                        Context(actor=agent), tid, body=" ".join(rng.choices(WORDS, k=5))
                    )
                elif op == 1:
                    await service.post_message(
                        Context(actor=agent), tid, body="internal secret", visibility="internal"
                    )
                elif op == 2:
                    await service.post_message(Context(actor=cust), tid, body="any news on this?")
                elif op == 3:
                    await service.assign(Context(actor=agent), tid, assignee=agent.id)
                elif op == 4:
                    await service.change_status(
                        Context(actor=agent),
                        tid,
                        status=rng.choice(["in_progress", "on_hold", "resolved", "open"]),
                    )
                elif op == 5:
                    await service.close(Context(actor=cust), tid, resolution="done")
                elif op == 6:
                    await service.reopen(Context(actor=cust), tid, reason="still broken")
                elif op == 7:
                    await service.rate(Context(actor=cust), tid, rating=rng.randint(1, 5))
                else:
                    await service.change_priority(
                        Context(actor=agent), tid, priority=rng.choice(["low", "urgent"])
                    )
            except DomainError:
                pass  # not allowed in the ticket's current state: fine, try something else
    return ids


async def proj_assert_equals_fold(pool: asyncpg.Pool) -> None:
    """Every read model equals what folding the event log with the domain gives."""
    store = EventStore(pool)
    events = await store.read_all(limit=10_000_000)
    assert await projections_checkpoint(pool) == events[-1].checkpoint, "not caught up"
    streams: dict[int, list[Any]] = {}
    for e in events:
        streams.setdefault(e.stream_id, []).append(e)
    folded = {
        tid: domain.fold((e.event, e.occurred_at) for e in evs) for tid, evs in streams.items()
    }
    rows = {r["id"]: r for r in await pool.fetch("SELECT * FROM ticket_summaries")}
    assert set(rows) == set(folded)
    for tid, t in folded.items():
        assert t is not None
        r = rows[tid]
        expected = {
            "subject": t.subject,
            "description": t.description,
            "status": t.status,
            "priority": t.priority,
            "category_id": t.category_id,
            "requester_id": t.requester.id,
            "requester_role": t.requester.role,
            "requester_name": t.requester.name,
            "assignee": t.assignee,
            "created_at": t.created_at,
            "updated_at": t.updated_at,
            "version": t.version,
            "first_response_due_at": t.sla.first_response_due_at,
            "resolution_due_at": t.sla.resolution_due_at,
            "first_response_at": t.sla.first_response_at,
            "sla_paused": t.sla.paused,
            "first_response_breached": t.sla.breached_first_response,
            "resolution_breached": t.sla.breached_resolution,
            "rating": t.rating,
            "rating_comment": t.rating_comment,
            "message_count": len(t.messages),
            "public_message_count": sum(m.visibility == "public" for m in t.messages),
            "closed_at": t.closed_at,
            "resolved_at": t.resolved_at,
            "resolution": t.resolution,
            "last_position": streams[tid][-1].position,
            "last_activity_at": t.messages[-1].created_at if t.messages else t.created_at,
        }
        assert {k: r[k] for k in expected} == expected, f"ticket {tid} differs from its fold"
    messages = await pool.fetch("SELECT * FROM ticket_messages ORDER BY position")
    expected_messages = [
        (m.id, tid, m.author.id, m.author.role, m.body, m.visibility)
        for tid, t in folded.items()
        for m in (t.messages if t else [])
    ]
    assert sorted(
        (r["id"], r["ticket_id"], r["author_id"], r["author_role"], r["body"], r["visibility"])
        for r in messages
    ) == sorted(expected_messages)
    logs = await pool.fetch("SELECT * FROM ticket_logs ORDER BY position")
    assert [
        (r["position"], r["ticket_id"], r["version"], r["action"], r["actor_id"], r["at"])
        for r in logs
    ] == sorted(
        (e.position, e.stream_id, e.version, e.type, e.metadata.actor.id, e.occurred_at)
        for e in events
    )
    cats = Counter((t.category_id, t.status) for t in folded.values() if t)
    got_cats = {
        (r["category_id"], r["status"]): r["count"]
        for r in await pool.fetch("SELECT * FROM category_counts")
    }
    assert got_cats == dict(cats)
    agents = Counter((t.assignee, t.status) for t in folded.values() if t and t.assignee)
    got_agents = {
        (r["assignee"], r["status"]): r["count"]
        for r in await pool.fetch("SELECT * FROM agent_counts")
    }
    assert got_agents == dict(agents)
    # the SLA sweep's first-response work list: exactly the tickets the domain says can
    # still breach that target, at their due time (written in the domain's terms here)
    queue = {
        tid: t.sla.first_response_due_at
        for tid, t in folded.items()
        if t
        and t.status not in ("resolved", "closed")
        and not t.sla.paused
        and t.sla.first_response_at is None
        and not t.sla.breached_first_response
        and t.sla.first_response_due_at is not None
    }
    got_queue = {
        r["ticket_id"]: r["due_at"]
        for r in await pool.fetch("SELECT * FROM sla_first_response_queue")
    }
    assert got_queue == queue
    # the term index holds exactly the distinct lexemes of each ticket's search vector
    lexemes = (
        f"SELECT t, created_at, id, {term_key_sql('t', 'created_at')} FROM ticket_summaries, "
        "unnest(tsvector_to_array(search)) t"
    )
    stored = "SELECT term, created_at, ticket_id, walk_key FROM ticket_search_terms"
    assert (
        await pool.fetchval(
            f"SELECT count(*) FROM (({stored} EXCEPT ALL {lexemes}) "
            f"UNION ALL ({lexemes} EXCEPT ALL {stored})) d"
        )
        == 0
    ), "ticket_search_terms differs from the lexemes of the search vectors"


TABLES = {
    "ticket_summaries": "id",
    "ticket_search_terms": "walk_key, created_at, ticket_id, term",
    "ticket_messages": "id",
    "ticket_logs": "position",
    "category_counts": "category_id, status",
    "agent_counts": "assignee, status",
}


async def proj_snapshot(pool: asyncpg.Pool, schema: str = "public") -> dict[str, list[Any]]:
    """Every read-model row (search vectors as text), for before/after comparisons."""
    out: dict[str, list[Any]] = {}
    for table, key in TABLES.items():
        rows = await pool.fetch(f'SELECT * FROM "{schema}".{table} ORDER BY {key}')
        out[table] = [
            {k: (str(v) if k == "search" else v) for k, v in dict(r).items()} for r in rows
        ]
    out["checkpoints"] = [
        tuple(r)
        for r in await pool.fetch(
            f'SELECT name, transaction_id, position FROM "{schema}".projection_checkpoints '
            "ORDER BY name"
        )
    ]
    return out


async def proj_wait_until(
    check: Callable[[], Awaitable[bool]], what: str, limit_s: float = 60.0
) -> None:
    """Poll ``check`` until true; fail naming ``what`` if it never becomes true."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit_s
    while not await check():
        if loop.time() > end:
            pytest.fail(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


class ProjWorker:
    """A real worker process (``python -m workers.main``) on its own arq queue."""

    def __init__(self, dsn: str, redis_url: str, queue: str, batch_size: int = 50) -> None:
        env = {
            **os.environ,
            "TICKETING_DATABASE_URL": dsn,
            "TICKETING_REDIS_URL": redis_url,
            "TICKETING_LOG_LEVEL": "WARNING",
        }
        args = ["-m", "workers.main", "--queue", queue, "--batch-size", str(batch_size)]
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def proj_catch_up(pool: asyncpg.Pool, batch_size: int = 500) -> None:
    """Run the runner until the read models reach the log's head.

    Visibility is cluster-wide (a transaction open in any database holds back
    pg_snapshot_xmin), so one pass may legitimately stop short of the head.
    """
    from projections.runner import catch_up

    head = await EventStore(pool).head()

    async def done() -> bool:
        await catch_up(pool, batch_size)
        return await projections_checkpoint(pool) >= head

    await proj_wait_until(done, "the runner to reach the head of the log")
