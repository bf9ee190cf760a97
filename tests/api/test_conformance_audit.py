"""Conformance of the native API around the audit surface and error bodies, through HTTP.

- The audit routes show stored events as they are: a row altered behind the service's
  back (say, into an event type that does not exist) must still be readable there, since
  that is where an auditor looks at it; it used to answer 500.
- A body of the wrong JSON type names the field a client knows ("body"), not the
  handler's parameter ("data").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest

Auth = Callable[..., dict[str, str]]

CUSTOMER = ("cust-conf-audit", "customer")
AGENT = ("agent-conf-audit", "agent")
AUDITOR = ("auditor-conf-audit", "auditor")


async def _tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    """What a superuser could do behind the service's back."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


@pytest.fixture
async def altered_event(
    client: httpx.AsyncClient, auth: Auth, api_pool: asyncpg.Pool
) -> AsyncIterator[tuple[int, int]]:
    """A ticket whose last event's type was altered into one that does not exist
    (restored afterwards, so the shared database stays intact). Yields (ticket, position)."""
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Tamper me", "description": "x", "category_id": 1},
        headers=auth(*CUSTOMER),
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = await client.post(
        f"/v1/tickets/{tid}/assign", json={"assignee": "someone"}, headers=auth(*AGENT)
    )
    assert r.status_code == 200, r.text
    # read-your-writes: once the list shows it, the projections have passed the event
    r = await client.get("/v1/tickets", params={"assignee": "someone"}, headers=auth(*AGENT))
    assert tid in [t["id"] for t in r.json()["items"]]
    position = await api_pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND version = 2", tid
    )
    await _tamper(api_pool, "UPDATE events SET type = 'Bogus' WHERE position = $1", position)
    try:
        yield tid, position
    finally:
        await _tamper(
            api_pool, "UPDATE events SET type = 'TicketAssigned' WHERE position = $1", position
        )


async def test_audit_ticket_events_show_an_altered_row_as_stored(
    client: httpx.AsyncClient, auth: Auth, altered_event: tuple[int, int]
) -> None:
    tid, position = altered_event
    r = await client.get(f"/v1/audit/tickets/{tid}/events", headers=auth(*AUDITOR))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [(e["version"], e["type"]) for e in items] == [(1, "TicketRaised"), (2, "Bogus")]
    altered = items[1]
    assert altered["position"] == position
    assert altered["data"]["assignee"] == "someone"
    assert len(altered["hash"]) == 64 and altered["prev_hash"] == items[0]["hash"]


async def test_audit_feed_shows_an_altered_row_as_stored(
    client: httpx.AsyncClient,
    auth: Auth,
    api_pool: asyncpg.Pool,
    altered_event: tuple[int, int],
) -> None:
    _tid, position = altered_event
    after = await api_pool.fetchval(
        "SELECT max(position) FROM events WHERE position < $1", position
    )
    r = await client.get(
        "/v1/audit/events", params={"after": after, "limit": 1}, headers=auth(*AUDITOR)
    )
    assert r.status_code == 200, r.text
    [event] = r.json()["items"]
    assert (event["position"], event["type"]) == (position, "Bogus")


@pytest.mark.parametrize("body", [[], "closed", 3])
async def test_a_body_of_the_wrong_json_type_names_the_body(
    client: httpx.AsyncClient,
    auth: Auth,
    problem_of: Callable[[httpx.Response], dict[str, Any]],
    body: object,
) -> None:
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Wrong body", "description": "x", "category_id": 1},
        headers=auth(*CUSTOMER),
    )
    tid = r.json()["id"]
    r = await client.post(f"/v1/tickets/{tid}/close", json=body, headers=auth(*CUSTOMER))
    assert r.status_code == 422, r.text
    problem = problem_of(r)
    assert [e["field"] for e in problem["errors"]] == ["body"]
    assert "must be an object" in problem["errors"][0]["message"]
    assert "data" not in problem["detail"]
