"""Ticket summaries: one row per ticket with everything lists filter on, plus full text."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from projections.fold import SUMMARY_COLUMNS, summary_record

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_summaries"
TEXT_CONFIG = "english"

_UPDATE_COLUMNS = [c for c in SUMMARY_COLUMNS if c not in ("id", "subject", "description")]


def upsert_sql(s: str) -> str:
    cols = ", ".join(SUMMARY_COLUMNS)
    params = ", ".join(f"${i + 1}" for i in range(len(SUMMARY_COLUMNS)))
    sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATE_COLUMNS)
    # subject and description never change after TicketRaised, so search starts from them
    # on insert and only grows by public message bodies (see apply_search).
    return (
        f"INSERT INTO {s}.ticket_summaries ({cols}, search) VALUES ({params}, "
        f"to_tsvector('{TEXT_CONFIG}', $2) || to_tsvector('{TEXT_CONFIG}', $3)) "
        f"ON CONFLICT (id) DO UPDATE SET {sets}"
    )


def search_sql(s: str, where: str) -> str:
    """search = search || the ordered fold of the selected public message bodies."""
    return (
        f"UPDATE {s}.ticket_summaries t SET search = t.search || m.v FROM ("
        f" SELECT ticket_id, ticketing_tsvector_agg(to_tsvector('{TEXT_CONFIG}', body)"
        f" ORDER BY position) AS v FROM {s}.ticket_messages"
        f" WHERE visibility = 'public' AND {where} GROUP BY ticket_id) m"
        f" WHERE t.id = m.ticket_id"
    )


async def load(conn: asyncpg.Connection, s: str, ids: list[int]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT id, state, message_count, public_message_count, last_activity_at, "
        f"last_position FROM {s}.ticket_summaries WHERE id = ANY($1::bigint[])",
        ids,
    )
    return rows


async def apply(conn: asyncpg.Connection, s: str, batch: Batch) -> None:
    records = [summary_record(f) for f in batch.after.values()]
    if records:
        await conn.executemany(upsert_sql(s), records)


async def apply_search(conn: asyncpg.Connection, s: str, batch: Batch) -> None:
    positions = [m[-1] for m in batch.messages if m[7] == "public"]
    if positions:
        await conn.execute(search_sql(s, "position = ANY($1::bigint[])"), positions)
