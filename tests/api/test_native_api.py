"""The native /v1 API over real HTTP: tickets, lists, logs, categories, attachments,
idempotency, If-Match, read-your-writes, limits, metrics, health and logs."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest

from services.api.auth import BASIC_FAILURES_PER_MINUTE
from services.passwords import hash_password

Auth = Callable[..., dict[str, str]]
RAISE = {"subject": "Cannot log in", "description": "The login page says no", "category_id": 1}


def problem(r: httpx.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/problem+json"), (r.status_code, r.text)
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == r.status_code
    return body


def cust() -> str:
    return f"cust-{uuid.uuid4().hex[:10]}"


async def raise_ticket(
    client: httpx.AsyncClient, headers: dict[str, str], **over: Any
) -> dict[str, Any]:
    r = await client.post("/v1/tickets", json={**RAISE, **over}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_raise_returns_201_location_etag_and_the_ticket(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = cust()
    r = await client.post(
        "/v1/tickets", json={**RAISE, "priority": "high"}, headers=auth(me, "customer", "Ann")
    )
    assert r.status_code == 201
    t = r.json()
    assert r.headers["location"] == f"/v1/tickets/{t['id']}"
    assert r.headers["etag"] == '"1"'
    assert t["status"] == "open" and t["priority"] == "high" and t["version"] == 1
    assert t["requester"] == {"id": me, "role": "customer", "name": "Ann"}
    assert t["created_at"].endswith("Z")
    assert t["messages"] == []
    g = await client.get(r.headers["location"], headers=auth(me, "customer"))
    assert g.status_code == 200 and g.json()["id"] == t["id"] and g.headers["etag"] == '"1"'


async def test_customers_see_only_their_tickets_and_no_internal_notes(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = cust()
    t = await raise_ticket(client, auth(me, "customer"))
    agent = auth("agent-9", "agent", "Nine")
    r = await client.post(
        f"/v1/tickets/{t['id']}/messages",
        json={"body": "secret", "visibility": "internal"},
        headers=agent,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/tickets/{t['id']}/messages",
        json={"body": "<b>hi</b><script>x()</script>", "body_type": "html"},
        headers=agent,
    )
    assert r.status_code == 201
    staff_view = (await client.get(f"/v1/tickets/{t['id']}", headers=agent)).json()
    assert [m["visibility"] for m in staff_view["messages"]] == ["internal", "public"]
    assert "script" not in staff_view["messages"][1]["body"]
    mine = (await client.get(f"/v1/tickets/{t['id']}", headers=auth(me, "customer"))).json()
    assert [m["body"] for m in mine["messages"]] == ["<b>hi</b>"]
    other = await client.get(f"/v1/tickets/{t['id']}", headers=auth(cust(), "customer"))
    assert other.status_code == 403
    problem(other)
    assert (
        await client.get(f"/v1/tickets/{t['id']}", headers=auth("aud", "auditor"))
    ).status_code == 200
    # customers may not post internal notes
    r = await client.post(
        f"/v1/tickets/{t['id']}/messages",
        json={"body": "x", "visibility": "internal"},
        headers=auth(me, "customer"),
    )
    assert r.status_code == 403
    # the customer's log hides the internal note
    log_c = (await client.get(f"/v1/tickets/{t['id']}/log", headers=auth(me, "customer"))).json()
    log_a = (await client.get(f"/v1/tickets/{t['id']}/log", headers=agent)).json()
    assert len(log_a["items"]) == 3 and len(log_c["items"]) == 2
    assert log_a["items"][0]["action"] == "TicketRaised"


async def test_staff_find_tickets_by_their_internal_notes_and_customers_do_not(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = cust()
    t = await raise_ticket(client, auth(me, "customer"))
    word = f"zq{uuid.uuid4().hex[:10]}"
    agent = auth("agent-9", "agent", "Nine")
    r = await client.post(
        f"/v1/tickets/{t['id']}/messages",
        json={"body": f"customer is on the {word} plan", "visibility": "internal"},
        headers=agent,
    )
    assert r.status_code == 201, r.text

    async def ids(headers: dict[str, str], path: str = "/v1/tickets") -> list[int]:
        r = await client.get(path, params={"q": word}, headers=headers)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await ids(agent) == [t["id"]]
    assert await ids(auth("admin-1", "admin")) == [t["id"]]
    assert await ids(auth("aud", "auditor")) == [t["id"]]
    assert await ids(auth(me, "customer")) == []  # their own ticket, but not their note
    # the backend dialect's keyword search agrees
    found = await client.get(
        "/backend/api/support-ticket", params={"keyword": word, "count": "true"}, headers=agent
    )
    assert found.json()["data"] == {"count": 1}, found.text
    found = await client.get(
        "/backend/api/support-ticket", params={"keyword": word}, headers=auth(me, "customer")
    )
    assert found.json()["data"] == [], found.text


async def test_unknown_ticket_is_404_and_bad_ids_are_404(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    h = auth("agent-1", "agent")
    for path in ("/v1/tickets/999999999", "/v1/tickets/0", "/v1/tickets/99999999999999999999"):
        r = await client.get(path, headers=h)
        assert r.status_code == 404, (path, r.text)
        problem(r)
    r = await client.post("/v1/tickets/999999999/close", json={}, headers=h)
    assert r.status_code == 404
    assert (await client.get("/v1/nothing-here", headers=h)).status_code == 404


async def test_validation_errors_are_422_with_field_errors_and_append_nothing(
    client: httpx.AsyncClient, auth: Auth, event_count: Callable[[], Awaitable[int]]
) -> None:
    h = auth(cust(), "customer")
    before = await event_count()
    cases = [
        {"subject": "", "description": "d", "category_id": 1},
        {"subject": "x" * 201, "description": "d", "category_id": 1},
        {"subject": "ok", "description": "bad\x00char", "category_id": 1},
        {"subject": "ok", "description": "d", "category_id": 424242},
        {"subject": "ok", "description": "d", "category_id": 1, "priority": "whenever"},
        {"subject": "ok", "description": "d", "category_id": 1, "unknown": 1},
        {"description": "d", "category_id": 1},
        {"subject": "ok", "description": "d", "category_id": 1, "attachments": ["nope"]},
    ]
    for body in cases:
        r = await client.post("/v1/tickets", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        p = problem(r)
        assert p["errors"] and p["errors"][0]["field"], p
    r = await client.post(
        "/v1/tickets", content=b"{not json", headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 422
    problem(r)
    assert await event_count() == before


async def test_body_over_one_mib_is_413_and_appends_nothing(
    client: httpx.AsyncClient, auth: Auth, event_count: Callable[[], Awaitable[int]]
) -> None:
    h = auth(cust(), "customer")
    before = await event_count()
    big = {**RAISE, "description": "x" * (1024 * 1024 + 10)}
    r = await client.post("/v1/tickets", json=big, headers=h)
    assert r.status_code == 413, r.text
    assert problem(r)["status"] == 413
    assert await event_count() == before


async def test_idempotent_replay_returns_the_first_response_and_appends_nothing(
    client: httpx.AsyncClient, auth: Auth, event_count: Callable[[], Awaitable[int]]
) -> None:
    h = {**auth(cust(), "customer"), "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/v1/tickets", json=RAISE, headers=h)
    assert first.status_code == 201
    before = await event_count()
    again = await client.post("/v1/tickets", json=RAISE, headers=h)
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["etag"] == first.headers["etag"]
    assert await event_count() == before
    # the same JSON written another way (key order, spacing) is the same request
    rewritten = msgspec.json.encode(dict(reversed(list(RAISE.items())))).replace(b",", b", ")
    again = await client.post(
        "/v1/tickets", content=rewritten, headers={**h, "Content-Type": "application/json"}
    )
    assert again.status_code == 201 and again.json() == first.json()
    assert await event_count() == before
    different = await client.post("/v1/tickets", json={**RAISE, "subject": "other"}, headers=h)
    assert different.status_code == 422
    assert problem(different)["code"] == "idempotency_key_reused"
    assert await event_count() == before
    # commands on a ticket too
    tid = first.json()["id"]
    mh = {**h, "Idempotency-Key": uuid.uuid4().hex}
    m1 = await client.post(f"/v1/tickets/{tid}/messages", json={"body": "once"}, headers=mh)
    m2 = await client.post(f"/v1/tickets/{tid}/messages", json={"body": "once"}, headers=mh)
    assert m1.status_code == m2.status_code == 201
    assert m1.json() == m2.json()
    assert len(m2.json()["messages"]) == 1
    long_key = {**h, "Idempotency-Key": "k" * 500}
    url = f"/v1/tickets/{tid}/messages"
    too_long = await client.post(url, json={"body": "x"}, headers=long_key)
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.text
    assert "idempotency_key" not in too_long.text


async def test_stale_if_match_is_412_and_appends_nothing(
    client: httpx.AsyncClient, auth: Auth, api_pool: asyncpg.Pool
) -> None:
    me = auth(cust(), "customer")
    t = await raise_ticket(client, me)
    agent = auth("agent-2", "agent")
    ok = await client.post(
        f"/v1/tickets/{t['id']}/assign",
        json={"assignee": "a1"},
        headers={**agent, "If-Match": '"1"'},
    )
    assert ok.status_code == 200 and ok.headers["etag"] == '"2"'
    stale = await client.post(
        f"/v1/tickets/{t['id']}/assign",
        json={"assignee": "a2"},
        headers={**agent, "If-Match": '"1"'},
    )
    assert stale.status_code == 412
    assert problem(stale)["code"] == "version_mismatch"
    weak = await client.post(
        f"/v1/tickets/{t['id']}/status",
        json={"status": "on_hold"},
        headers={**agent, "If-Match": 'W/"2"'},
    )
    assert weak.status_code == 200
    bad = await client.post(
        f"/v1/tickets/{t['id']}/status",
        json={"status": "open"},
        headers={**agent, "If-Match": "three"},
    )
    assert bad.status_code == 422
    assert problem(bad)["errors"][0]["field"] == "If-Match"
    n = await api_pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", t["id"])
    assert n == 3


async def test_state_conflicts_are_409(client: httpx.AsyncClient, auth: Auth) -> None:
    me = auth(cust(), "customer")
    t = await raise_ticket(client, me)
    assert (
        await client.post(f"/v1/tickets/{t['id']}/rating", json={"rating": 5}, headers=me)
    ).status_code == 409
    assert (
        await client.post(f"/v1/tickets/{t['id']}/reopen", json={"reason": "x"}, headers=me)
    ).status_code == 409
    assert (await client.post(f"/v1/tickets/{t['id']}/close", headers=me)).status_code == 200
    r = await client.post(f"/v1/tickets/{t['id']}/close", headers=me)
    assert r.status_code == 409 and problem(r)["code"] == "ticket_already_closed"
    r = await client.post(f"/v1/tickets/{t['id']}/messages", json={"body": "x"}, headers=me)
    assert r.status_code == 409
    r = await client.post(
        f"/v1/tickets/{t['id']}/rating", json={"rating": 5, "comment": "great"}, headers=me
    )
    assert r.status_code == 200 and r.json()["rating"] == 5


async def test_read_your_writes_raise_then_list_50_times(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = cust()
    h = auth(me, "customer")
    for i in range(50):
        t = await raise_ticket(client, h, subject=f"ryw {i}")
        r = await client.get("/v1/tickets", params={"limit": 1}, headers=h)
        assert r.status_code == 200
        assert r.json()["items"][0]["id"] == t["id"], f"iteration {i}: list missed the new ticket"
        assert "x-projection-lag-ms" not in r.headers


async def test_list_filters_and_keyset_pagination(client: httpx.AsyncClient, auth: Auth) -> None:
    me = cust()
    h = auth(me, "customer")
    agent = auth("agent-3", "agent")
    word = "zebra" + uuid.uuid4().hex[:6]
    ids = [
        (
            await raise_ticket(
                client, h, subject=f"{word} ticket {i}", category_id=2 if i % 2 else 1
            )
        )["id"]
        for i in range(5)
    ]
    await client.post(f"/v1/tickets/{ids[0]}/assign", json={"assignee": "agent-3"}, headers=agent)
    await client.post(f"/v1/tickets/{ids[1]}/priority", json={"priority": "urgent"}, headers=agent)
    await client.post(f"/v1/tickets/{ids[2]}/close", headers=h)

    async def list_ids(params: dict[str, Any], headers: dict[str, str] = h) -> list[int]:
        r = await client.get("/v1/tickets", params={"requester": me, **params}, headers=headers)
        assert r.status_code == 200, r.text
        return [i["id"] for i in r.json()["items"]]

    assert await list_ids({}) == ids[::-1]
    assert await list_ids({"assignee": "agent-3"}, agent) == [ids[0]]
    assert await list_ids({"priority": "urgent"}) == [ids[1]]
    assert await list_ids({"status": "closed"}) == [ids[2]]
    assert set(await list_ids({"status": "unresolved"})) == set(ids) - {ids[2]}
    assert set(await list_ids({"status": "unassigned"})) == set(ids) - {ids[0], ids[2]}
    assert await list_ids({"status": "overdue"}) == []
    assert set(await list_ids({"category": 2})) == {ids[1], ids[3]}
    assert set(await list_ids({"q": word})) == set(ids)
    assert await list_ids({"created_from": "2999-01-01T00:00:00Z"}) == []
    # valid RFC 3339 whose UTC instant no datetime holds: 422, not a database error
    for edge in (
        {"created_from": "0001-01-01T00:00:00+05:00"},
        {"created_to": "9999-12-31T23:59:59-05:00"},
    ):
        r = await client.get("/v1/tickets", params=edge, headers=h)
        assert r.status_code == 422 and next(iter(edge)) in problem(r)["detail"], r.text
    assert set(await list_ids({"created_to": "2999-01-01T00:00:00Z"})) == set(ids)
    # keyset pages of 2 cover everything once
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"requester": me, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/tickets", params=params, headers=h)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    # limits and bad input
    assert (await client.get("/v1/tickets", params={"limit": 101}, headers=h)).status_code == 422
    twice = await client.get("/v1/tickets?status=open&status=in_progress", headers=h)
    assert twice.status_code == 422 and "status is given more than once" in problem(twice)["detail"]
    assert (
        await client.get("/v1/tickets", params={"status": "weird"}, headers=h)
    ).status_code == 422
    assert (
        await client.get("/v1/tickets", params={"cursor": "garbage!"}, headers=h)
    ).status_code == 422
    # an empty filter is refused rather than matching nothing (or everything)
    for empty in ({"assignee": ""}, {"requester": ""}, {"cursor": ""}, {"q": "  "}):
        r = await client.get("/v1/tickets", params=empty, headers=h)
        assert r.status_code == 422, (empty, r.text)
        assert next(iter(empty)) in problem(r)["detail"], r.text
    # a customer cannot list someone else's tickets
    assert (
        await client.get("/v1/tickets", params={"requester": "someone"}, headers=h)
    ).status_code == 403
    # without a requester filter a customer still sees only their own
    other = auth(cust(), "customer")
    assert (await client.get("/v1/tickets", headers=other)).json()["items"] == []


async def test_categories_list_and_admin_only_create(client: httpx.AsyncClient, auth: Auth) -> None:
    r = await client.get("/v1/categories", headers=auth(cust(), "customer"))
    assert r.status_code == 200
    assert "Payment Issues" in [c["name"] for c in r.json()["items"]]
    name = "Cat " + uuid.uuid4().hex[:6]
    for role in ("customer", "agent", "auditor"):
        denied = await client.post("/v1/categories", json={"name": name}, headers=auth("x", role))
        assert denied.status_code == 403, role
        problem(denied)
    ok = await client.post(
        "/v1/categories",
        json={"name": name, "description": "d", "parent_id": 1},
        headers=auth("adm", "admin"),
    )
    assert ok.status_code == 201, ok.text
    assert ok.headers["location"] == f"/v1/categories/{ok.json()['id']}"
    dup = await client.post("/v1/categories", json={"name": name}, headers=auth("adm", "admin"))
    assert dup.status_code == 422
    # names are unique whatever their case (helpdesk_v1 looks types up case-insensitively)
    cased = await client.post(
        "/v1/categories", json={"name": name.upper()}, headers=auth("adm", "admin")
    )
    assert cased.status_code == 422 and name in problem(cased)["detail"]
    got = await client.get(ok.headers["location"], headers=auth("x", "customer"))
    assert got.json()["name"] == name
    t = await raise_ticket(client, auth(cust(), "customer"), category_id=ok.json()["id"])
    assert t["category_id"] == ok.json()["id"]


async def test_creating_a_category_or_uploading_a_file_honours_idempotency_keys(
    client: httpx.AsyncClient, auth: Auth, api_pool: asyncpg.Pool
) -> None:
    admin = {**auth("adm-idem", "admin"), "Idempotency-Key": uuid.uuid4().hex}
    body = {"name": "Idem " + uuid.uuid4().hex[:6], "description": "once"}
    first = await client.post("/v1/categories", json=body, headers=admin)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/categories", json=body, headers=admin)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    named = await api_pool.fetchval("SELECT count(*) FROM categories WHERE name = $1", body["name"])
    assert named == 1
    other = await client.post("/v1/categories", json={**body, "name": "Other"}, headers=admin)
    assert other.status_code == 422 and problem(other)["code"] == "idempotency_key_reused"

    uploader = cust()
    me = {**auth(uploader, "customer"), "Idempotency-Key": uuid.uuid4().hex}
    file = {"file": ("once.txt", b"upload me once", "text/plain")}
    up1 = await client.post("/v1/attachments", files=file, headers=me)
    up2 = await client.post("/v1/attachments", files=file, headers=me)  # another boundary
    assert up1.status_code == up2.status_code == 201, up2.text
    assert up1.json() == up2.json()
    stored = await api_pool.fetchval(
        "SELECT count(*) FROM attachments WHERE uploader_id = $1", uploader
    )
    assert stored == 1  # the repeat stored nothing
    changed = await client.post(
        "/v1/attachments", files={"file": ("once.txt", b"other bytes", "text/plain")}, headers=me
    )
    assert changed.status_code == 422 and problem(changed)["code"] == "idempotency_key_reused"


async def test_attachments_upload_download_and_authorization(
    client: httpx.AsyncClient, auth: Auth, api_pool: asyncpg.Pool
) -> None:
    me = auth(cust(), "customer")
    content = b"%PDF-1.4 " + uuid.uuid4().bytes
    up = await client.post(
        "/v1/attachments", files={"file": ("invoice.pdf", content, "application/pdf")}, headers=me
    )
    assert up.status_code == 201, up.text
    att = up.json()
    assert att["size"] == len(content) and att["filename"] == "invoice.pdf"
    # content-addressed: a second upload of the same bytes shares the blob
    up2 = await client.post(
        "/v1/attachments", files={"file": ("copy.pdf", content, "application/pdf")}, headers=me
    )
    assert up2.json()["sha256"] == att["sha256"] and up2.json()["id"] != att["id"]
    assert (
        await api_pool.fetchval(
            "SELECT count(*) FROM attachment_blobs WHERE sha256 = $1", att["sha256"]
        )
        == 1
    )
    # the uploader may download; an agent may not until it is on a ticket
    d = await client.get(f"/v1/attachments/{att['id']}", headers=me)
    assert d.status_code == 200 and d.content == content
    assert d.headers["content-type"].startswith("application/pdf")
    agent = auth("agent-5", "agent")
    assert (await client.get(f"/v1/attachments/{att['id']}", headers=agent)).status_code == 403
    t = await raise_ticket(client, me, attachments=[att["id"]])
    assert t["attachments"] == [att["id"]]
    assert (await client.get(f"/v1/attachments/{att['id']}", headers=agent)).status_code == 200
    assert (
        await client.get(f"/v1/attachments/{att['id']}", headers=auth(cust(), "customer"))
    ).status_code == 403
    # an agent's attachment on a public message reaches the requester
    a2 = (
        await client.post(
            "/v1/attachments", files={"file": ("fix.txt", b"do this", "text/plain")}, headers=agent
        )
    ).json()
    m = await client.post(
        f"/v1/tickets/{t['id']}/messages",
        json={"body": "see file", "attachments": [a2["id"]]},
        headers=agent,
    )
    assert m.status_code == 201
    assert (await client.get(f"/v1/attachments/{a2['id']}", headers=me)).status_code == 200
    # unknown id, empty file, missing field
    assert (await client.get("/v1/attachments/doesnotexist", headers=me)).status_code == 404
    assert (
        await client.post(
            "/v1/attachments", files={"file": ("e.txt", b"", "text/plain")}, headers=me
        )
    ).status_code == 422
    assert (
        await client.post(
            "/v1/attachments", files={"other": ("e.txt", b"x", "text/plain")}, headers=me
        )
    ).status_code == 422


async def test_attachment_over_the_limit_is_413(
    start_live_server: Callable[..., Awaitable[Any]], auth: Auth
) -> None:
    server = await start_live_server(attachment_max_bytes=1024, project=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        h = auth(cust(), "customer")
        ok = await c.post(
            "/v1/attachments",
            files={"file": ("a.bin", b"x" * 1024, "application/octet-stream")},
            headers=h,
        )
        assert ok.status_code == 201
        r = await c.post(
            "/v1/attachments",
            files={"file": ("a.bin", b"x" * 1025, "application/octet-stream")},
            headers=h,
        )
        assert r.status_code == 413, r.text
        problem(r)
        r = await c.post(
            "/v1/attachments",
            files={"file": ("a.bin", io.BytesIO(b"x" * 200_000), "application/octet-stream")},
            headers=h,
        )
        assert r.status_code == 413


async def test_rate_limit_is_429_with_retry_after_and_appends_nothing(
    start_live_server: Callable[..., Awaitable[Any]], auth: Auth
) -> None:
    limit = 5
    server = await start_live_server(rate_limit_per_minute=limit, project=False)
    pool = await asyncpg.connect(server.settings.database_url)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
            h = auth(cust(), "customer")
            limited: httpx.Response | None = None
            # a window boundary may reset the count once, so 2*limit+1 requests always hit it
            for _ in range(2 * limit + 1):
                r = await c.get("/v1/categories", headers=h)
                if r.status_code == 429:
                    limited = r
                    break
                assert r.status_code == 200
            assert limited is not None, "the rate limit never applied"
            assert int(limited.headers["retry-after"]) >= 1
            assert problem(limited)["code"] == "rate_limited"
            before = await pool.fetchval("SELECT count(*) FROM events")
            r = await c.post("/v1/tickets", json=RAISE, headers=h)
            if r.status_code == 429:  # still in the same window
                assert await pool.fetchval("SELECT count(*) FROM events") == before
            # another principal is not affected
            assert (
                await c.get("/v1/categories", headers=auth(cust(), "customer"))
            ).status_code == 200
    finally:
        await pool.close()


async def test_failed_basic_logins_for_one_name_are_throttled(
    start_live_server: Callable[..., Awaitable[Any]],
) -> None:
    server = await start_live_server(rate_limit_per_minute=1000, project=False)
    # names of this run only: the failure counts live in the shared Redis for a minute
    guessed, bystander = (f"{who}-{uuid.uuid4().hex[:8]}" for who in ("guessed", "bystander"))
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        for name in (guessed, bystander):
            await conn.execute(
                "INSERT INTO api_users (name, password_hash, role) VALUES ($1, $2, 'agent')",
                name,
                await asyncio.to_thread(hash_password, "right-password"),
            )
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        statuses: list[int] = []
        # a minute boundary may reset the count once, so 2*limit+1 guesses always hit it
        for i in range(2 * BASIC_FAILURES_PER_MINUTE + 1):
            last = await c.get("/v1/categories", auth=(guessed, f"g{i}"))
            statuses.append(last.status_code)
            if statuses[-1] == 429:
                break
        assert statuses[-1] == 429 and set(statuses[:-1]) == {401}
        assert len(statuses) > BASIC_FAILURES_PER_MINUTE
        window = int(time.time() // 60)
        limited = await c.get("/v1/categories", auth=(guessed, "right-password"))
        if int(time.time() // 60) == window:  # the right password waits out the minute too
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
            assert problem(limited)["code"] == "rate_limited"
        # the throttle is per name: another API user logs in as usual
        ok = await c.get("/v1/categories", auth=(bystander, "right-password"))
        assert ok.status_code == 200
    # and per client address: the guessed name still logs in from elsewhere, so a
    # stranger who knows it cannot lock its integration out
    elsewhere = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=server.url, timeout=30, transport=elsewhere) as c:
        ok = await c.get("/v1/categories", auth=(guessed, "right-password"))
        assert ok.status_code == 200, ok.text


async def test_basic_credentials_say_whether_base64_or_utf8_is_wrong(
    client: httpx.AsyncClient,
) -> None:
    latin1 = base64.b64encode("café:pw".encode("latin-1")).decode()
    r = await client.get("/v1/categories", headers={"Authorization": f"Basic {latin1}"})
    assert r.status_code == 401 and "UTF-8" in problem(r)["detail"]
    r = await client.get("/v1/categories", headers={"Authorization": "Basic %%%"})
    assert r.status_code == 401 and "base64" in problem(r)["detail"]
    # a NUL in the name: no such user (401), not a database error (400)
    nul = base64.b64encode(b"in\x00teg1:pw").decode()
    r = await client.get("/v1/categories", headers={"Authorization": f"Basic {nul}"})
    assert r.status_code == 401, r.text


async def test_rate_limiter_fails_open_without_redis(
    start_live_server: Callable[..., Awaitable[Any]], auth: Auth
) -> None:
    server = await start_live_server(
        rate_limit_per_minute=1, redis_url="redis://127.0.0.1:1/0", project=False
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        h = auth(cust(), "customer")
        for _ in range(3):
            assert (await c.get("/v1/categories", headers=h)).status_code == 200
        t = await c.post("/v1/tickets", json=RAISE, headers=h)
        assert t.status_code == 201, "commands must succeed while Redis is down"
        ready = await c.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["redis"]["status"] == "degraded"


async def test_metrics_for_admin_and_auditor_only(client: httpx.AsyncClient, auth: Auth) -> None:
    await raise_ticket(client, auth(cust(), "customer"))
    for role, want in (("admin", 200), ("auditor", 200), ("agent", 403), ("customer", 403)):
        r = await client.get("/metrics", headers=auth("m", role))
        assert r.status_code == want, role
    text = (await client.get("/metrics", headers=auth("m", "admin"))).text
    assert (
        'ticketing_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/tickets",status="201"}'
        in text
        or 'route="/v1/tickets"' in text
    )
    assert 'ticketing_commands_total{command="RaiseTicket",outcome="ok"}' in text
    assert "ticketing_projection_lag_events" in text
    assert 'ticketing_sla_breaches_total{target="resolution"}' in text


async def test_health(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    r = await client.get("/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["database"]["status"] == "ok" and body["redis"]["status"] == "ok"
    assert "projections" in body
    assert body["worker"]["status"] in ("ok", "degraded") and "alive" in body["worker"]


async def test_openapi_describes_routes_and_security(client: httpx.AsyncClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["scheme"] == "bearer" and schemes["basicAuth"]["scheme"] == "basic"
    for path in (
        "/v1/tickets",
        "/v1/tickets/{ticket_id}/messages",
        "/v1/attachments",
        "/v1/categories",
    ):
        assert path in spec["paths"], path
    assert "422" in spec["paths"]["/v1/tickets"]["post"]["responses"]
    # a download answers in the type it was uploaded with, so any type is documented
    download = spec["paths"]["/v1/attachments/{attachment_id}"]["get"]["responses"]["200"]
    assert list(download["content"]) == ["*/*"]


async def test_request_ids_on_every_response_and_logs_never_hold_secrets(
    client: httpx.AsyncClient,
    auth: Auth,
    basic_user: Callable[..., Awaitable[tuple[str, str]]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, password = await basic_user("agent")
    basic = "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()
    bearer = auth("agent-log", "agent")
    token = bearer["Authorization"].split()[1]
    caplog.set_level(logging.DEBUG)
    rid = "req-" + uuid.uuid4().hex
    r = await client.get("/v1/tickets", headers={**bearer, "X-Request-ID": rid})
    assert r.headers["x-request-id"] == rid
    r = await client.get("/v1/tickets", headers={"Authorization": basic})
    assert r.status_code == 200 and r.headers["x-request-id"]
    r = await client.get("/v1/tickets", headers={"Authorization": basic + "wrong"})
    assert r.status_code == 401 and r.headers["x-request-id"]
    r = await client.get("/no/such/route", headers=bearer)
    assert r.status_code == 404 and r.headers["x-request-id"]
    await asyncio.sleep(0)  # log records are emitted before the response is sent anyway
    text = "\n".join(
        rec.getMessage() + " " + str(getattr(rec, "fields", "")) for rec in caplog.records
    )
    assert rid in text, "the request id is in the log lines"
    for secret in (token, password, basic.split()[1]):
        assert secret not in text
