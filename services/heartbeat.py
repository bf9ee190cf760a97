"""Workers' signs of life, for ``/health/ready``.

The projection loop (workers/projector.py) records one at most every ``BEAT_S`` from the
loop itself, so a worker whose loop is stuck stops reporting even if its process lives.
A worker that stops cleanly removes its row; one that dies leaves it to go stale.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime
from typing import NamedTuple

import asyncpg

BEAT_S = 5.0
STALE_S = 30.0  # no beat for this long: the worker is taken for gone


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def beat(pool: asyncpg.Pool, worker_id: str, started_at: datetime) -> None:
    await pool.execute(
        # the rows of workers that died long ago go with it
        "WITH gone AS (DELETE FROM worker_heartbeats WHERE seen_at < now() - interval '1 day') "
        "INSERT INTO worker_heartbeats (worker_id, host, pid, started_at, seen_at) "
        "VALUES ($1, $2, $3, $4, now()) "
        "ON CONFLICT (worker_id) DO UPDATE SET seen_at = now()",
        worker_id,
        socket.gethostname(),
        os.getpid(),
        started_at,
    )


async def forget(pool: asyncpg.Pool, worker_id: str) -> None:
    await pool.execute("DELETE FROM worker_heartbeats WHERE worker_id = $1", worker_id)


class Workers(NamedTuple):
    alive: int  # workers seen within STALE_S
    last_seen_at: datetime | None  # the latest beat of any worker, ever


async def workers_seen(pool: asyncpg.Pool, stale_s: float = STALE_S) -> Workers:
    row = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE seen_at > now() - make_interval(secs => $1)) AS alive, "
        "max(seen_at) AS last FROM worker_heartbeats",
        stale_s,
    )
    assert row is not None
    return Workers(int(row["alive"]), row["last"])
