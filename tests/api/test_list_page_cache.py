"""Kept list pages (services/api/pagecache.py): served again only while nothing changed."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from services.api.pagecache import PageCache

Auth = Callable[..., dict[str, str]]


def _cache(live_server: Any) -> PageCache:
    cache: PageCache = live_server.app.state.page_cache
    return cache


async def _raise(client: httpx.AsyncClient, headers: dict[str, str], subject: str) -> int:
    r = await client.post(
        "/v1/tickets",
        json={"subject": subject, "description": "d", "category_id": 1},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_a_repeated_list_is_served_again_until_a_command_changes_the_read_models(
    client: httpx.AsyncClient, auth: Auth, live_server: Any
) -> None:
    word = f"kept{uuid.uuid4().hex[:8]}"
    agent = auth("agent-kept", "agent")
    first = await _raise(client, agent, f"{word} one")
    cache = _cache(live_server)
    url = f"/v1/tickets?q={word}&limit=5"

    r1 = await client.get(url, headers=agent)
    hits = cache.hits
    r2 = await client.get(url, headers=agent)
    assert r1.status_code == r2.status_code == 200
    assert r2.content == r1.content and [i["id"] for i in r2.json()["items"]] == [first]
    assert cache.hits == hits + 1

    # read-your-writes: the kept page must not hide a ticket raised since
    second = await _raise(client, agent, f"{word} two")
    r3 = await client.get(url, headers=agent)
    assert [i["id"] for i in r3.json()["items"]] == [second, first]

    # Cache-Control: no-cache reads the rows again, and they are the same
    hits = cache.hits
    r4 = await client.get(url, headers={**agent, "Cache-Control": "no-cache"})
    assert r4.content == r3.content and cache.hits == hits


async def test_customers_and_agents_get_their_own_pages_of_the_same_query(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = f"cust-{uuid.uuid4().hex[:8]}"
    customer, agent = auth(me, "customer"), auth("agent-kept", "agent")
    ticket = await _raise(client, customer, "counts differ")
    note = {"body": "internal", "visibility": "internal"}
    r = await client.post(f"/v1/tickets/{ticket}/messages", json=note, headers=agent)
    assert r.status_code == 201, r.text
    url = f"/v1/tickets?requester={me}"
    for _ in range(2):  # the second round comes from the kept pages
        as_agent = (await client.get(url, headers=agent)).json()["items"]
        as_customer = (await client.get(url, headers=customer)).json()["items"]
        assert [i["message_count"] for i in as_agent] == [1]
        assert [i["message_count"] for i in as_customer] == [0]


async def test_lists_on_the_clock_are_never_kept(
    client: httpx.AsyncClient, auth: Auth, live_server: Any
) -> None:
    cache = _cache(live_server)
    agent = auth("agent-kept", "agent")
    before = (cache.hits, cache.misses, len(cache))
    for status in ("overdue", "duetoday", "overdue"):
        r = await client.get(f"/v1/tickets?status={status}", headers=agent)
        assert r.status_code == 200
    assert (cache.hits, cache.misses, len(cache)) == before


def test_the_cache_keeps_within_its_bounds_least_recently_used_first_out() -> None:
    cache = PageCache(max_entries=3, max_bytes=100)
    at = datetime.now(UTC)
    for i in range(4):
        cache.put(i, (1, i, at), b"x" * 10)
    assert len(cache) == 3 and cache.get(0) is None
    assert cache.get(1) is not None  # now the most recent
    cache.put("big", (1, 9, at), b"y" * 20)
    assert cache.get(2) is None and cache.get(1) is not None
    cache.put("huge", (1, 10, at), b"z" * 60)  # over a quarter of the budget: not kept
    assert cache.get("huge") is None
    cache.put(1, (2, 0, at), b"w" * 5)  # replacing an entry frees its bytes
    kept = cache.get(1)
    assert kept is not None and kept.version == (2, 0, at) and kept.body == b"w" * 5
