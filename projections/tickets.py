"""Ticket summaries: one row per ticket with everything lists filter on, plus full text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.fold import SUMMARY_COLUMNS, summary_record

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_summaries"
TEXT_CONFIG = "english"

_UPDATE_COLUMNS = [c for c in SUMMARY_COLUMNS if c not in ("id", "subject", "description")]


def term_key_sql(term: str, at: str) -> str:
    """``ticket_search_terms.walk_key`` of lexeme ``term`` in a ticket created at ``at``
    (SQL expressions): the lexeme's hash in the high 32 bits, the whole seconds since
    2000 in the low 32 (migrations/0105_search_terms.sql explains why). Every writer and
    the queries' cursors use this one expression."""
    return f"({_term_hash_sql(term)} | {_key_seconds_sql(at)})"


def _term_hash_sql(term: str) -> str:
    return f"(hashtext({term})::bigint << 32)"


def _key_seconds_sql(at: str) -> str:
    return (
        f"least(greatest(floor(date_part('epoch', {at} - timestamptz '2000-01-01 00:00:00+00')),"
        " 0), 4294967295)::bigint"
    )


def term_rows_sql(s: str, where: str) -> str:
    """INSERT of one ``ticket_search_terms`` row per distinct lexeme of the vectors of the
    summaries in schema ``s`` that satisfy ``where`` (on alias ``s``): the bulk path
    (``term_key_sql``, with the seconds computed once per ticket)."""
    return (
        f"INSERT INTO {s}.ticket_search_terms (term, created_at, ticket_id, walk_key) "
        f"SELECT t.term, s.created_at, s.id, {_term_hash_sql('t.term')} | s.seconds "
        f"FROM (SELECT s.id, s.created_at, s.search, {_key_seconds_sql('s.created_at')}"
        f" AS seconds FROM {s}.ticket_summaries s WHERE {where}) s,"
        " unnest(tsvector_to_array(s.search)) AS t(term)"
    )


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
    "sla_missed_due": "timestamptz",
    "state": "bytea",
}


def upsert_cte(s: str, first_param: int, messages_cte: str, new_param: int) -> str:
    """CTEs ``sum_search``/``sum_in``/``sum_up``/``sum_terms``: upsert every summary of the
    batch in one statement from ``len(SUMMARY_COLUMNS)`` column arrays starting at
    ``$first_param``, and index the lexemes they gain in ``ticket_search_terms``.

    subject and description never change after TicketRaised, so search starts from them
    on insert and only grows by the batch's public message bodies (from ``messages_cte``),
    folded in position order: the same left fold as the bulk rebuild (rebuild.py).
    A ticket new to the read models (its id in ``$new_param``, ``new_ticket_ids``) adds a
    term row for every lexeme of its vector; one already there, for the lexemes of its new
    public messages that it does not have yet (one runner at a time: nothing races).
    """
    cols = ", ".join(SUMMARY_COLUMNS)
    arrays = ", ".join(
        f"${first_param + i}::{SUMMARY_TYPES[c]}[]" for i, c in enumerate(SUMMARY_COLUMNS)
    )
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATE_COLUMNS)
    cfg = TEXT_CONFIG
    new = f"${new_param}::bigint[]"
    key = term_key_sql("t.term", "u.created_at")
    # Each summary row is joined with its messages' vector once (a hash join), and the
    # row to insert carries in ``search`` either the whole vector (a new ticket) or only
    # what the batch adds to it, which the conflict arm appends. A correlated lookup of
    # the batch's vectors per row would be quadratic in the batch; subject and
    # description are vectorised only for tickets that are new.
    return (
        f"sum_search AS (SELECT ticket_id, ticketing_tsvector_agg(to_tsvector('{cfg}', body)"
        f" ORDER BY position) AS v FROM {messages_cte} WHERE visibility = 'public'"
        f" GROUP BY ticket_id), "
        f"sum_in AS (SELECT u.*, u.id = ANY({new}) AS is_new, m.v"
        f" FROM unnest({arrays}) AS u({cols}) LEFT JOIN sum_search m ON m.ticket_id = u.id), "
        f"sum_up AS (INSERT INTO {s}.ticket_summaries ({cols}, search) "
        f"SELECT {', '.join('u.' + c for c in SUMMARY_COLUMNS)}, CASE WHEN u.is_new"
        f" THEN to_tsvector('{cfg}', u.subject) || to_tsvector('{cfg}', u.description)"
        f" || coalesce(u.v, ''::tsvector) ELSE coalesce(u.v, ''::tsvector) END"
        f" FROM sum_in u "
        f"ON CONFLICT (id) DO UPDATE SET {sets},"
        f" search = ticket_summaries.search || EXCLUDED.search RETURNING id, created_at, search), "
        f"sum_terms AS (INSERT INTO {s}.ticket_search_terms (term, created_at, ticket_id,"
        f" walk_key) SELECT t.term, u.created_at, u.id, {key}"
        f" FROM sum_up u JOIN unnest({new}) AS n(id) ON n.id = u.id,"
        f" unnest(tsvector_to_array(u.search)) AS t(term) "
        f"UNION ALL SELECT t.term, u.created_at, u.id, {key}"
        f" FROM sum_in u CROSS JOIN unnest(tsvector_to_array(u.v)) AS t(term)"
        # the table as it was before the statement: what the ticket already has. A
        # lateral probe, so each lexeme is one index lookup: for a large batch the
        # planner would otherwise hash the whole term table for an anti-join.
        f" LEFT JOIN LATERAL (SELECT 1 AS hit FROM {s}.ticket_search_terms x"
        f" WHERE x.walk_key = {key} AND x.created_at = u.created_at AND x.ticket_id = u.id"
        f" AND x.term = t.term LIMIT 1) x ON true"
        f" WHERE NOT u.is_new AND u.v IS NOT NULL AND x.hit IS NULL)"
    )


def new_ticket_ids(batch: Batch) -> list[int]:
    """The batch's tickets that had no summary row before it."""
    return [tid for tid in batch.after if tid not in batch.loaded]


def summary_arrays(batch: Batch) -> list[list[Any]]:
    records = [summary_record(f) for f in batch.after.values()]
    if not records:
        return [[] for _ in SUMMARY_COLUMNS]
    return [list(col) for col in zip(*records, strict=True)]
