"""Ticket messages: every MessagePosted with its visibility and attachments."""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg

from projections.fold import MESSAGE_COLUMNS

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_messages"


async def apply(conn: asyncpg.Connection, schema: str, batch: Batch) -> None:
    if batch.messages:
        await conn.copy_records_to_table(
            "ticket_messages", schema_name=schema, columns=MESSAGE_COLUMNS, records=batch.messages
        )
