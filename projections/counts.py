"""Per-category and per-agent ticket counts by status (rows with a zero count are removed)."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "counts"
PARAMS = 6  # parameters upsert_ctes takes


def rebuild_sql(s: str) -> list[str]:
    """Recompute both tables from the summaries (bulk rebuild)."""
    return [
        f"INSERT INTO {s}.category_counts (category_id, status, count) "
        f"SELECT category_id, status, count(*) FROM {s}.ticket_summaries GROUP BY 1, 2",
        f"INSERT INTO {s}.agent_counts (assignee, status, count) "
        f"SELECT assignee, status, count(*) FROM {s}.ticket_summaries "
        f"WHERE assignee IS NOT NULL GROUP BY 1, 2",
    ]


def _table_cte(s: str, table: str, key: str, key_type: str, first_param: int) -> str:
    # A count that reaches zero is deleted, every other one upserted; the two sets are
    # disjoint, so no row is touched twice by the statement.
    p = first_param
    src = f"{table}_in"
    return (
        f"{src} AS (SELECT * FROM unnest(${p}::{key_type}[], ${p + 1}::text[], ${p + 2}::int[])"
        f" AS d({key}, status, delta)), "
        f"{table}_zero AS (SELECT d.{key}, d.status FROM {src} d JOIN {s}.{table} c"
        f" ON c.{key} = d.{key} AND c.status = d.status WHERE c.count + d.delta = 0), "
        f"{table}_del AS (DELETE FROM {s}.{table} c USING {table}_zero z"
        f" WHERE c.{key} = z.{key} AND c.status = z.status), "
        f"{table}_up AS (INSERT INTO {s}.{table} ({key}, status, count)"
        f" SELECT d.{key}, d.status, d.delta FROM {src} d WHERE NOT EXISTS (SELECT 1 FROM"
        f" {table}_zero z WHERE z.{key} = d.{key} AND z.status = d.status)"
        f" ON CONFLICT ({key}, status) DO UPDATE SET count = {table}.count + EXCLUDED.count)"
    )


def upsert_ctes(s: str, first_param: int) -> str:
    """CTEs applying both tables' deltas (6 parameters from ``$first_param``)."""
    return (
        _table_cte(s, "category_counts", "category_id", "bigint", first_param)
        + ", "
        + _table_cte(s, "agent_counts", "assignee", "text", first_param + 3)
    )


def _arrays(deltas: Counter[tuple[object, str]]) -> list[list[Any]]:
    rows = [(k, st, n) for (k, st), n in sorted(deltas.items(), key=str) if n]
    return [[r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]]


def delta_arrays(batch: Batch) -> list[list[Any]]:
    return _arrays(batch.category_deltas) + _arrays(batch.agent_deltas)
