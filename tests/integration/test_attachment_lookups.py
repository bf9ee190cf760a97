"""Who may download an attachment is decided through indexes, not scans of the log.

Each download by an agent asked whether any ticket was raised with the attachment by
parsing the JSON of every event: 4 s at a million events. The statements must be able to
use their indexes (with sequential scans priced out, the plan names them; on a table this
small the planner would otherwise rightly prefer a scan). That they find what they should
is tested through HTTP (tests/api/test_native_api.py, attachments).
"""

from __future__ import annotations

import asyncpg
from proj_helpers import AGENTS, CUSTOMERS, proj_catch_up

from services.api import attachments
from services.commands import CommandService, Context


async def _plan(pool: asyncpg.Pool, sql: str, *args: object) -> str:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        rows = await conn.fetch("EXPLAIN " + sql, *args)
    return "\n".join(r[0] for r in rows)


async def test_attachment_lookups_use_their_indexes_and_find_what_they_should(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    cust = CUSTOMERS[0]
    t = (
        await proj_service.raise_ticket(
            Context(actor=cust), subject="s", description="d", category_id=1
        )
    ).ticket.id
    await proj_service.post_message(Context(actor=AGENTS[0]), t, body="plain reply")
    await proj_catch_up(fresh_pool)

    plan = await _plan(fresh_pool, attachments.STAFF_ON_TICKET_SQL, "att-x")
    assert "events_raised_attachments_idx" in plan, plan
    plan = await _plan(fresh_pool, attachments.STAFF_ON_MESSAGE_SQL, "att-x")
    assert "ticket_messages_attachments_idx" in plan, plan
    # nothing carries these ids: every statement answers no
    for sql in (attachments.STAFF_ON_TICKET_SQL, attachments.STAFF_ON_MESSAGE_SQL):
        assert await fresh_pool.fetchval(sql, "att-x") == 0
    for sql in (attachments.CUSTOMER_ON_TICKET_SQL, attachments.CUSTOMER_ON_MESSAGE_SQL):
        assert await fresh_pool.fetchval(sql, "att-x", cust.id) == 0
