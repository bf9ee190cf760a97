"""Per-category and per-agent ticket counts by status (rows with a zero count are removed)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "counts"


def rebuild_sql(s: str) -> list[str]:
    """Recompute both tables from the summaries (bulk rebuild)."""
    return [
        f"INSERT INTO {s}.category_counts (category_id, status, count) "
        f"SELECT category_id, status, count(*) FROM {s}.ticket_summaries GROUP BY 1, 2",
        f"INSERT INTO {s}.agent_counts (assignee, status, count) "
        f"SELECT assignee, status, count(*) FROM {s}.ticket_summaries "
        f"WHERE assignee IS NOT NULL GROUP BY 1, 2",
    ]


async def _apply(
    conn: asyncpg.Connection, s: str, table: str, key: str, deltas: Counter[tuple[object, str]]
) -> None:
    rows = [(k, st, n) for (k, st), n in sorted(deltas.items(), key=str) if n]
    if not rows:
        return
    await conn.executemany(
        f"INSERT INTO {s}.{table} ({key}, status, count) VALUES ($1, $2, $3) "
        f"ON CONFLICT ({key}, status) DO UPDATE SET count = {table}.count + EXCLUDED.count",
        rows,
    )
    if any(n < 0 for _, _, n in rows):  # only a decrement can bring a count to zero
        await conn.execute(f"DELETE FROM {s}.{table} WHERE count = 0")


async def apply(conn: asyncpg.Connection, s: str, batch: Batch) -> None:
    await _apply(conn, s, "category_counts", "category_id", batch.category_deltas)
    await _apply(conn, s, "agent_counts", "assignee", batch.agent_deltas)
