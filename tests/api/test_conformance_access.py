"""Conformance: who may reach what (SPEC section 2, attachments in section 3)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import httpx

Auth = Callable[..., dict[str, str]]
Count = Callable[[], Awaitable[int]]


def _customer(auth: Auth) -> dict[str, str]:
    return auth(f"cust-{uuid.uuid4().hex[:8]}", "customer", "Customer")


async def _upload(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    r = await client.post(
        "/v1/attachments",
        files={"file": ("private.txt", b"my bank statement", "text/plain")},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_a_customer_cannot_attach_someone_elses_upload_to_read_it(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    owner, thief = _customer(auth), _customer(auth)
    file_id = await _upload(client, owner)
    r = await client.get(f"/v1/attachments/{file_id}", headers=thief)
    assert r.status_code == 403, r.text

    before = await event_count()
    r = await client.post(
        "/v1/tickets",
        json={"subject": "s", "description": "d", "category_id": 1, "attachments": [file_id]},
        headers=thief,
    )
    assert r.status_code == 422, r.text
    r = await client.post(
        "/support/tickets",
        json={"subject": "s", "description": "d", "categoryId": "1", "attachments": [file_id]},
        headers=thief,
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == 400
    assert await event_count() == before

    r = await client.post(
        "/v1/tickets", json={"subject": "s", "description": "d", "category_id": 1}, headers=thief
    )
    ticket = r.json()["id"]
    r = await client.post(
        f"/support/tickets/{ticket}/messages",
        json={"message": "see file", "attachments": [file_id]},
        headers=thief,
    )
    assert r.status_code == 400, r.text
    assert (await client.get(f"/v1/attachments/{file_id}", headers=thief)).status_code == 403

    # The owner still attaches their own upload, and an agent may attach it for them.
    r = await client.post(
        "/v1/tickets",
        json={"subject": "s", "description": "d", "category_id": 1, "attachments": [file_id]},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    agent = auth(f"agent-{uuid.uuid4().hex[:8]}", "agent")
    r = await client.post(
        f"/v1/tickets/{r.json()['id']}/messages",
        json={"body": "attached again", "attachments": [file_id]},
        headers=agent,
    )
    assert r.status_code == 201, r.text


async def test_metrics_content_type_is_parseable_and_roles_are_enforced(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    from email.message import Message

    for role, status in (("admin", 200), ("auditor", 200), ("agent", 403), ("customer", 403)):
        r = await client.get("/metrics", headers=auth(f"{role}-m", role))
        assert r.status_code == status, r.text
    r = await client.get("/metrics", headers=auth("auditor-m", "auditor"))
    ctype = r.headers["content-type"]
    assert ctype.lower().count("charset") == 1, ctype
    msg = Message()
    msg["content-type"] = ctype
    assert msg.get_content_type() == "text/plain"
    assert (await client.get("/metrics")).status_code == 401


async def test_auditors_may_post_the_helpdesk_date_query_but_no_command(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    """V2's fromDate/toDate need POST ("change the method to post"): it only reads."""
    customer = _customer(auth)
    r = await client.post(
        "/v1/tickets", json={"subject": "s", "description": "d", "category_id": 1}, headers=customer
    )
    ticket = r.json()["id"]
    auditor = auth("auditor-q", "auditor")
    r = await client.post(
        "/api/v1/get_tickets/0",
        data={"fromDate": "01-01-2000 0:0", "toDate": "01-01-2100 0:0"},
        headers=auditor,
    )
    assert r.status_code == 200, r.text
    assert str(ticket) in {item["Ticket"]["id"] for item in r.json()["data"]}

    before = await event_count()
    for method, path, body in (
        ("POST", "/api/v1/send_message", {"ticketId": ticket, "ticketMessage": "x"}),
        ("GET", f"/api/v1/close_ticket/{ticket}", None),
        ("POST", f"/api/v1/close_ticket/{ticket}", {}),
        ("POST", "/api/v1/assign_ticket_to_admin", {"ticketId": ticket, "admin": "a"}),
    ):
        r = await client.request(method, path, json=body, headers=auditor)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["errorCode"] == 403
    assert await event_count() == before
