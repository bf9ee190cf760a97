"""Commands → read models equal to a fold of the events; queries over them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from proj_helpers import AGENTS, CUSTOMERS, proj_assert_equals_fold, proj_catch_up, proj_drive

from projections.queries import TicketFilter, count_tickets
from projections.runner import apply_next_batch
from services.commands import CommandService, Context
from services.db import migrate


async def test_read_models_equal_the_fold_of_the_events(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    await proj_drive(proj_service, 40, steps=10)
    await proj_catch_up(fresh_pool, batch_size=37)
    await proj_assert_equals_fold(fresh_pool)


async def test_catching_up_in_many_small_batches_equals_one_big_batch(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    await proj_drive(proj_service, 10, steps=8, seed=11)
    await proj_catch_up(fresh_pool, batch_size=1)
    await proj_assert_equals_fold(fresh_pool)
    await proj_drive(proj_service, 5, steps=8, seed=12)
    await proj_catch_up(fresh_pool, batch_size=1000)
    await proj_assert_equals_fold(fresh_pool)


async def test_states_stored_in_the_earlier_format_are_continued_and_rewritten(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    """Read models written before the positional state codec keep working: the runner
    continues their folds and stores them anew in the current format."""
    import msgspec

    from projections.fold import decode_state

    await proj_drive(proj_service, 12, steps=4, seed=21)
    await proj_catch_up(fresh_pool)
    old_format = msgspec.msgpack.Encoder()  # field names included, as rows used to be
    rows = await fresh_pool.fetch("SELECT id, state FROM ticket_summaries")
    for r in rows:
        await fresh_pool.execute(
            "UPDATE ticket_summaries SET state = $2 WHERE id = $1",
            r["id"],
            old_format.encode(decode_state(r["state"])),
        )
    for r in rows:  # more events on those tickets
        if decode_state(r["state"]).status != "closed":
            await proj_service.post_message(Context(actor=AGENTS[0]), r["id"], body="and then")
    await proj_catch_up(fresh_pool)
    await proj_assert_equals_fold(fresh_pool)
    firsts = await fresh_pool.fetch("SELECT get_byte(state, 0) AS b FROM ticket_summaries")
    assert any(0x90 <= r["b"] <= 0x9F or r["b"] in (0xDC, 0xDD) for r in firsts)


def _scans_of(plan: dict[str, object], table: str) -> list[dict[str, object]]:
    found = [plan] if plan.get("Relation Name") == table else []
    for child in plan.get("Plans", []):  # type: ignore[union-attr]
        found += _scans_of(child, table)
    return found


async def test_a_batch_read_probes_the_summaries_by_key_whatever_the_planner_prefers(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    """The runner's read looks up the stored fold of each ticket of the batch by its key.
    With nested loops priced out (as a planner estimating a large batch may price them),
    a plain join becomes a merge or hash join that reads every summary row."""
    import json

    from projections.runner import PROJECTIONS, _read_sql

    await proj_drive(proj_service, 30, steps=3, seed=5)
    await proj_catch_up(fresh_pool)
    await proj_drive(proj_service, 3, steps=2, seed=6)  # a batch waiting to be read
    names = [p.NAME for p in PROJECTIONS]
    async with fresh_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_nestloop = off")
        raw = await conn.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + _read_sql('"public"'), names, 500, len(names)
        )
    plan = json.loads(raw)[0]["Plan"]
    scans = _scans_of(plan, "ticket_summaries")
    assert scans, "the read no longer looks at the summaries"
    for scan in scans:
        assert scan.get("Index Cond"), f"an unkeyed scan of the summaries: {scan}"
        # rows read per probe: the batch's tickets, never the whole table
        assert scan["Actual Rows"] <= 1, scan  # type: ignore[operator]


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    """Every node of a JSON plan, the CTEs' and subplans' included."""
    found = [plan]
    for child in plan.get("Plans", []):  # type: ignore[union-attr]
        found += _nodes(child)
    return found


async def test_a_batch_write_joins_its_vectors_once_and_probes_the_term_index(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    """The write of a batch of replies to existing tickets costs in proportion to the
    batch. Each summary meets its messages' vector in one join (not a lookup of the
    batch's vectors per row, quadratic in the batch), and each new lexeme is one probe of
    the term index, even where the planner would rather hash the whole term table (nested
    loops priced out, as an estimate of a large batch may price them)."""
    import json

    from projections.runner import _write_sql, fold_batch, read_batch, write_args

    await proj_drive(proj_service, 30, steps=2, seed=8)
    await proj_catch_up(fresh_pool)
    ids = [
        r["id"]
        for r in await fresh_pool.fetch("SELECT id FROM ticket_summaries WHERE status <> 'closed'")
    ]
    for n, tid in enumerate(ids):  # a batch of public replies with new words in each
        await proj_service.post_message(
            Context(actor=AGENTS[0]), tid, body=f"zebra{n} quokka{n} printer"
        )
    async with fresh_pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            events, loaded = await read_batch(conn, "public", 500)
            batch = fold_batch(events, loaded)
            assert len(batch.messages) == len(ids) >= 10
            await conn.execute("SET LOCAL enable_nestloop = off")
            raw = await conn.fetchval(
                "EXPLAIN (ANALYZE, FORMAT JSON) " + _write_sql('"public"'), *write_args(batch)
            )
            indexed = await conn.fetchval(
                "SELECT count(*) FROM ticket_search_terms WHERE term LIKE 'zebra%'"
            )
            assert indexed == len(ids)  # the statement did index the new lexemes
        finally:
            await tx.rollback()  # the plan is what is checked here
    nodes = _nodes(json.loads(raw)[0]["Plan"])
    for node in nodes:
        if node["Node Type"] == "CTE Scan":
            assert node["Actual Loops"] <= 1, f"a CTE read once per row: {node}"
    probes = [n for n in nodes if n.get("Relation Name") == "ticket_search_terms"]
    probes = [n for n in probes if n["Node Type"] != "ModifyTable"]
    assert probes, "the write no longer checks what the tickets already have"
    for scan in probes:
        assert scan.get("Index Cond"), f"an unkeyed scan of the term table: {scan}"
        assert scan["Actual Rows"] <= 1, scan


async def test_replies_update_their_summaries_without_writing_index_entries(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    """A reply changes no indexed column of its summary (no full-text index on
    ``search``; the first-response work list is a table of its own), so its update is
    HOT: the summaries' indexes get no new entries. A first staff reply moves the ticket
    off the work list instead."""
    ids = []
    for i in range(6):
        r = await proj_service.raise_ticket(
            Context(actor=CUSTOMERS[0]), subject=f"Router {i}", description="down", category_id=1
        )
        ids.append(r.ticket.id)
    await proj_catch_up(fresh_pool)
    queued = "SELECT count(*) FROM sla_first_response_queue WHERE ticket_id = ANY($1::bigint[])"
    assert await fresh_pool.fetchval(queued, ids) == len(ids)
    for tid in ids:  # a first staff reply, a customer's answer with new words, a note
        await proj_service.post_message(Context(actor=AGENTS[0]), tid, body="Rebooted it?")
        await proj_service.post_message(
            Context(actor=CUSTOMERS[0]), tid, body="Yes, the modem blinks amber"
        )
        await proj_service.post_message(
            Context(actor=AGENTS[1]), tid, body="escalate", visibility="internal"
        )
    async with fresh_pool.acquire() as conn, conn.transaction():
        assert await apply_next_batch(conn, 1000) == 3 * len(ids)
        # this transaction's own counts, so no wait for the statistics collector
        updated, hot = await conn.fetchrow(
            "SELECT pg_stat_get_xact_tuples_updated(c.oid), "
            "pg_stat_get_xact_tuples_hot_updated(c.oid) FROM pg_class c "
            "WHERE c.oid = 'ticket_summaries'::regclass"
        )
    assert (updated, hot) == (len(ids), len(ids))
    assert await fresh_pool.fetchval(queued, ids) == 0
    await proj_assert_equals_fold(fresh_pool)
    # the new words are found, through the term index
    f = TicketFilter(q="amber modem")
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert await count_tickets(fresh_pool, f, now=now, timezone="UTC") == len(ids)


async def test_the_hot_update_migration_fills_the_work_list_from_existing_summaries(
    proj_service: CommandService, fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    """Read models from before migration 0109 (the first-response work list was a
    partial index of the summaries) get the list's table filled from their rows."""
    await proj_drive(proj_service, 30, steps=6, seed=31)
    await proj_catch_up(fresh_pool)
    expected = await fresh_pool.fetch("SELECT * FROM sla_first_response_queue ORDER BY 1")
    assert len(expected) > 3  # tickets still waiting for a first reply
    await fresh_pool.execute(
        "DROP TABLE sla_first_response_queue; "
        "CREATE INDEX ticket_summaries_search_idx ON ticket_summaries USING gin (search); "
        "DELETE FROM schema_migrations WHERE name = '0109_summaries_hot_updates.sql'"
    )
    assert await migrate(fresh_dsn) == ["0109_summaries_hot_updates.sql"]
    assert await fresh_pool.fetch("SELECT * FROM sla_first_response_queue ORDER BY 1") == expected
    gone = "SELECT count(*) FROM pg_indexes WHERE indexname = 'ticket_summaries_search_idx'"
    assert await fresh_pool.fetchval(gone) == 0
    await proj_assert_equals_fold(fresh_pool)
