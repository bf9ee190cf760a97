"""Ticket logs: one row per event (action, actor, when), keyed by global position."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from projections.fold import LOG_COLUMNS

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_logs"


async def apply(conn: asyncpg.Connection, schema: str, batch: Batch) -> None:
    if batch.logs:
        await conn.copy_records_to_table(
            "ticket_logs", schema_name=schema, columns=LOG_COLUMNS, records=batch.logs
        )
