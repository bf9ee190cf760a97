"""Ticket summaries: one row per ticket with everything lists filter on, plus full text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.fold import SUMMARY_COLUMNS, summary_record

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_summaries"
TEXT_CONFIG = "english"

_UPDATE_COLUMNS = [c for c in SUMMARY_COLUMNS if c not in ("id", "subject", "description")]


SUMMARY_TYPES = {
    "id": "bigint",
    "subject": "text",
    "description": "text",
    "status": "text",
    "priority": "text",
    "category_id": "bigint",
    "requester_id": "text",
    "requester_role": "text",
    "requester_name": "text",
    "assignee": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    "version": "int",
    "first_response_due_at": "timestamptz",
    "resolution_due_at": "timestamptz",
    "first_response_at": "timestamptz",
    "sla_paused": "bool",
    "first_response_breached": "bool",
    "resolution_breached": "bool",
    "rating": "int",
    "rating_comment": "text",
    "message_count": "int",
    "public_message_count": "int",
    "last_activity_at": "timestamptz",
    "closed_at": "timestamptz",
    "resolved_at": "timestamptz",
    "resolution": "text",
    "resolution_type": "text",
    "resolution_subject": "text",
    "reopened_count": "int",
    "last_position": "bigint",
    "state": "bytea",
}


def upsert_cte(s: str, first_param: int, messages_cte: str) -> str:
    """CTEs ``sum_in``/``sum_search``/``sum_up``: upsert every summary of the batch in one
    statement from ``len(SUMMARY_COLUMNS)`` column arrays starting at ``$first_param``.

    subject and description never change after TicketRaised, so search starts from them
    on insert and only grows by the batch's public message bodies (from ``messages_cte``),
    folded in position order: the same left fold as ``search_sql`` and the bulk rebuild.
    """
    cols = ", ".join(SUMMARY_COLUMNS)
    arrays = ", ".join(
        f"${first_param + i}::{SUMMARY_TYPES[c]}[]" for i, c in enumerate(SUMMARY_COLUMNS)
    )
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATE_COLUMNS)
    cfg = TEXT_CONFIG
    return (
        f"sum_in AS (SELECT * FROM unnest({arrays}) AS u({cols})), "
        f"sum_search AS (SELECT ticket_id, ticketing_tsvector_agg(to_tsvector('{cfg}', body)"
        f" ORDER BY position) AS v FROM {messages_cte} WHERE visibility = 'public'"
        f" GROUP BY ticket_id), "
        f"sum_up AS (INSERT INTO {s}.ticket_summaries ({cols}, search) "
        f"SELECT u.*, to_tsvector('{cfg}', u.subject) || to_tsvector('{cfg}', u.description)"
        f" || coalesce(m.v, ''::tsvector)"
        f" FROM sum_in u LEFT JOIN sum_search m ON m.ticket_id = u.id "
        f"ON CONFLICT (id) DO UPDATE SET {sets}, search = coalesce(ticket_summaries.search"
        f" || (SELECT v FROM sum_search m WHERE m.ticket_id = EXCLUDED.id),"
        f" ticket_summaries.search))"
    )


def summary_arrays(batch: Batch) -> list[list[Any]]:
    records = [summary_record(f) for f in batch.after.values()]
    if not records:
        return [[] for _ in SUMMARY_COLUMNS]
    return [list(col) for col in zip(*records, strict=True)]
