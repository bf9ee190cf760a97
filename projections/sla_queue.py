"""The SLA sweep's first-response work list: one row per ticket whose first-response
target can still be breached (open, unpaused, unanswered, unbreached), with its due time.

A table of its own rather than a partial index of ``ticket_summaries``: that index's
predicate named ``first_response_at``, so a ticket's first staff reply wrote a new entry
in every index of the summaries (migrations/0109_summaries_hot_updates.sql). Maintained
with the summaries in the same statement, from the change between each ticket's fold
before and after the batch, so only tickets entering, leaving or retargeted write here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from projections.fold import Folded

if TYPE_CHECKING:
    from projections.runner import Batch

TABLE = "sla_first_response_queue"
PARAMS = 3  # parameters upsert_ctes takes

# The same rule as ``queue_due``, on summary columns (the bulk rebuild's fill).
PREDICATE = (
    "status NOT IN ('resolved', 'closed') AND NOT sla_paused AND first_response_at IS NULL "
    "AND NOT first_response_breached AND first_response_due_at IS NOT NULL"
)


def queue_due(f: Folded | None) -> datetime | None:
    """The ticket's row in the work list: its first-response due time, or None."""
    if f is None:
        return None
    t = f.ticket
    clock = t.sla
    if (
        t.status in ("resolved", "closed")
        or clock.paused
        or clock.first_response_at is not None
        or clock.breached_first_response
    ):
        return None
    return clock.first_response_due_at


def rebuild_sql(s: str, where: str = "true") -> str:
    """Fill the work list from the summaries in schema ``s`` that satisfy ``where`` (the
    bulk rebuild, a chunk of tickets at a time)."""
    return (
        f"INSERT INTO {s}.{TABLE} (ticket_id, due_at) "
        f"SELECT id, first_response_due_at FROM {s}.ticket_summaries "
        f"WHERE ({where}) AND {PREDICATE}"
    )


def upsert_ctes(s: str, first_param: int) -> str:
    """CTEs deleting the rows of tickets that left the list and upserting those that
    entered it or were retargeted (3 parameters from ``$first_param``; disjoint sets)."""
    p = first_param
    return (
        f"frq_del AS (DELETE FROM {s}.{TABLE} WHERE ticket_id = ANY(${p}::bigint[])), "
        f"frq_up AS (INSERT INTO {s}.{TABLE} (ticket_id, due_at)"
        f" SELECT * FROM unnest(${p + 1}::bigint[], ${p + 2}::timestamptz[])"
        f" ON CONFLICT (ticket_id) DO UPDATE SET due_at = EXCLUDED.due_at)"
    )


def change_arrays(batch: Batch) -> list[list[Any]]:
    gone: list[int] = []
    ids: list[int] = []
    dues: list[datetime] = []
    for tid, (_before, after) in sorted(batch.queue_changes.items()):
        if after is None:
            gone.append(tid)
        else:  # entered, or retargeted (only changes are recorded)
            ids.append(tid)
            dues.append(after)
    return [gone, ids, dues]
