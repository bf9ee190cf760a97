"""Dialect support (seed 002): /support/tickets and /support/categories in their envelope."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Auth = Callable[..., dict[str, str]]


def customer(auth: Auth) -> tuple[str, dict[str, str]]:
    sub = f"user_{uuid.uuid4().hex[:8]}"
    return sub, auth(sub, "customer", "Lena Borrower")


def agent(auth: Auth) -> dict[str, str]:
    return auth("agent_123", "agent", "Agent Smith")


SEED_CREATE = {
    "subject": "Unable to make payment",
    "description": "I'm experiencing issues making a payment on my loan",
    "categoryId": "category_002",  # the seed's id, adapted to a seeded category
    "priority": "High",
    "attachments": [],
}


def data_of(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert body["statusCode"] == 200
    assert body["error"] is None
    return body["data"]


def assert_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["statusCode"] == status
    assert body["data"] is None
    assert body["error"]["code"] == status
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body  # type: ignore[no-any-return]


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], **changes: Any
) -> dict[str, Any]:
    r = await client.post("/support/tickets", json={**SEED_CREATE, **changes}, headers=headers)
    data: dict[str, Any] = data_of(r)
    return data


async def test_seed_create_ticket(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    data = await create(client, me)
    assert data["ticketId"].startswith("ticket_") and data["ticketId"][7:].isdigit()
    assert data["subject"] == "Unable to make payment"
    assert data["status"] == "Open"
    assert data["priority"] == "High"
    assert data["createdAt"].endswith("Z")


async def test_critical_means_urgent_and_priority_defaults_to_medium(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    critical = await create(client, me, priority="Critical")
    assert critical["priority"] == "Critical"
    native = (await client.get(f"/v1/tickets/{critical['ticketId'][7:]}", headers=me)).json()
    assert native["priority"] == "urgent"
    body = dict(SEED_CREATE)
    del body["priority"]
    plain = data_of(await client.post("/support/tickets", json=body, headers=me))
    assert plain["priority"] == "Medium"


async def test_seed_list_with_filters_and_pages(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    first = await create(client, me, priority="Low")
    second = await create(client, me)
    third = await create(client, me)
    r = await client.put(
        f"/backend/api/support-ticket/{third['ticketId'][7:]}",
        json={"status": 2},
        headers=agent(auth),
    )
    assert r.status_code == 200, r.text

    everything = data_of(await client.get("/support/tickets", headers=me))
    assert [t["ticketId"] for t in everything] == [
        third["ticketId"],
        second["ticketId"],
        first["ticketId"],
    ]
    item = everything[0]
    assert set(item) == {"ticketId", "subject", "status", "priority", "createdAt", "updatedAt"}
    assert item["status"] == "In Progress"
    assert item["updatedAt"].endswith("Z")

    in_progress = data_of(
        await client.get("/support/tickets", params={"status": "In Progress"}, headers=me)
    )
    assert [t["ticketId"] for t in in_progress] == [third["ticketId"]]
    open_high = data_of(
        await client.get(
            "/support/tickets", params={"status": "Open", "priority": "High"}, headers=me
        )
    )
    assert [t["ticketId"] for t in open_high] == [second["ticketId"]]
    page2 = data_of(
        await client.get("/support/tickets", params={"page": 2, "limit": 2}, headers=me)
    )
    assert [t["ticketId"] for t in page2] == [first["ticketId"]]


async def test_customers_list_only_their_own_tickets(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    _, other = customer(auth)
    mine = await create(client, me)
    theirs = await create(client, other)
    ids = {
        t["ticketId"]
        for t in data_of(await client.get("/support/tickets", params={"limit": 100}, headers=me))
    }
    assert mine["ticketId"] in ids and theirs["ticketId"] not in ids


async def test_seed_details_messages_and_close(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    created = await create(client, me)
    tid = created["ticketId"]
    r = await client.post(
        f"/support/tickets/{tid}/messages",
        json={"message": "I've tried multiple times but still getting an error", "attachments": []},
        headers=me,
    )
    added = data_of(r)
    assert added["messageId"].startswith("msg_") and added["messageId"][4:].isdigit()
    assert added["ticketId"] == tid
    assert added["content"] == "I've tried multiple times but still getting an error"
    assert added["timestamp"].endswith("Z")

    # ids are accepted without their prefix too
    d = data_of(await client.get(f"/support/tickets/{tid[7:]}", headers=me))
    assert d["ticketId"] == tid
    assert d["userId"] == sub
    assert d["subject"] == SEED_CREATE["subject"]
    assert d["description"] == SEED_CREATE["description"]
    assert d["status"] == "Open"
    assert d["priority"] == "High"
    assert d["categoryId"] == "category_2"
    assert d["assignedAgent"] is None
    assert d["createdAt"] == created["createdAt"]
    [m] = d["messages"]
    assert m == {
        "messageId": added["messageId"],
        "sender": sub,
        "content": added["content"],
        "timestamp": added["timestamp"],
        "attachments": [],
        "visibility": "public",
    }

    closed = data_of(
        await client.post(
            f"/support/tickets/{tid}/close",
            json={"resolution": "Issue was resolved by updating payment method"},
            headers=me,
        )
    )
    assert closed["ticketId"] == tid and closed["status"] == "Closed"
    assert closed["closedAt"].endswith("Z")
    assert data_of(await client.get(f"/support/tickets/{tid}", headers=me))["status"] == "Closed"
    native = (await client.get(f"/v1/tickets/{tid[7:]}", headers=me)).json()
    assert native["resolution"] == "Issue was resolved by updating payment method"


async def test_close_without_a_body(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    tid = (await create(client, me))["ticketId"]
    assert (
        data_of(await client.post(f"/support/tickets/{tid}/close", headers=me))["status"]
        == "Closed"
    )
    # closing twice is a state conflict, still in the envelope
    assert_error(await client.post(f"/support/tickets/{tid}/close", headers=me), 409)


async def test_message_with_an_uploaded_attachment(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    tid = (await create(client, me))["ticketId"]
    up = await client.post(
        "/v1/attachments", files={"file": ("receipt.txt", b"paid", "text/plain")}, headers=me
    )
    if up.status_code not in (200, 201):
        pytest.skip(f"attachment upload not available: {up.status_code}")
    att = up.json()["id"]
    data_of(
        await client.post(
            f"/support/tickets/{tid}/messages",
            json={"message": "see file", "attachments": [att]},
            headers=me,
        )
    )
    [m] = data_of(await client.get(f"/support/tickets/{tid}", headers=me))["messages"]
    assert m["attachments"] == [att]
    assert_error(
        await client.post(
            f"/support/tickets/{tid}/messages",
            json={"message": "x", "attachments": ["nope"]},
            headers=me,
        ),
        400,
    )


async def test_seed_categories(client: httpx.AsyncClient, auth: Auth) -> None:
    cats = data_of(await client.get("/support/categories", headers=customer(auth)[1]))
    assert cats and all(set(c) == {"categoryId", "name", "description"} for c in cats)
    assert all(c["categoryId"].startswith("category_") for c in cats)
    assert {
        "categoryId": "category_2",
        "name": "Payment Issues",
        "description": "Help with payment problems",
    } in cats
    bare = f"Bare {uuid.uuid4().hex[:6]}"
    made = await client.post("/v1/categories", json={"name": bare}, headers=auth("a", "admin"))
    assert made.status_code == 201, made.text
    cats = data_of(await client.get("/support/categories", headers=customer(auth)[1]))
    [mine] = [c for c in cats if c["name"] == bare]
    assert mine["description"] == ""  # a string, as the seed shows, never null


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": None},
        {"description": ""},
        {"categoryId": "category_999999"},
        {"categoryId": "loans"},
        {"priority": "Whenever"},
        {"subject": "x" * 201},
    ],
    ids=[
        "no-subject",
        "empty-description",
        "unknown-category",
        "bad-category-id",
        "bad-priority",
        "long-subject",
    ],
)
async def test_invalid_ticket_data_is_400(
    client: httpx.AsyncClient, auth: Auth, changes: dict[str, Any]
) -> None:
    body = {k: v for k, v in {**SEED_CREATE, **changes}.items() if v is not None}
    assert_error(await client.post("/support/tickets", json=body, headers=customer(auth)[1]), 400)


async def test_invalid_message_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    tid = (await create(client, me))["ticketId"]
    assert_error(await client.post(f"/support/tickets/{tid}/messages", json={}, headers=me), 400)
    assert_error(
        await client.post(f"/support/tickets/{tid}/messages", json={"message": " "}, headers=me),
        400,
    )


async def test_bad_list_parameters_are_400(client: httpx.AsyncClient, auth: Auth) -> None:
    me = customer(auth)[1]
    assert_error(
        await client.get("/support/tickets", params={"status": "Sleeping"}, headers=me), 400
    )
    assert_error(await client.get("/support/tickets", params={"page": 0}, headers=me), 400)
    assert_error(await client.get("/support/tickets", params={"limit": "many"}, headers=me), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/support/tickets"),
        ("GET", "/support/tickets"),
        ("GET", "/support/tickets/ticket_1"),
        ("POST", "/support/tickets/ticket_1/messages"),
        ("POST", "/support/tickets/ticket_1/close"),
        ("GET", "/support/categories"),
    ],
)
async def test_every_route_without_a_token_is_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_error(await client.request(method, path, json={}), 401)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [("GET", "", None), ("POST", "/messages", {"message": "hi"}), ("POST", "/close", {})],
)
async def test_unknown_ticket_is_404(
    client: httpx.AsyncClient, auth: Auth, method: str, suffix: str, body: Any
) -> None:
    r = await client.request(
        method, f"/support/tickets/ticket_987654321{suffix}", json=body, headers=customer(auth)[1]
    )
    assert_error(r, 404)


async def test_another_customers_ticket_is_403(client: httpx.AsyncClient, auth: Auth) -> None:
    tid = (await create(client, customer(auth)[1]))["ticketId"]
    other = customer(auth)[1]
    assert_error(await client.get(f"/support/tickets/{tid}", headers=other), 403)
    assert_error(
        await client.post(f"/support/tickets/{tid}/messages", json={"message": "x"}, headers=other),
        403,
    )
    assert_error(await client.post(f"/support/tickets/{tid}/close", headers=other), 403)


async def test_a_malformed_ticket_id_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    assert_error(await client.get("/support/tickets/ticket_abc", headers=customer(auth)[1]), 400)
    # digits of other scripts are not an id, nor is a number past the 64-bit range
    for bad in ("ticket_\u0663", "\u0663", "9223372036854775808"):
        assert_error(await client.get(f"/support/tickets/{bad}", headers=customer(auth)[1]), 400)


async def test_every_64_bit_id_is_a_ticket_id(client: httpx.AsyncClient, auth: Auth) -> None:
    for big in ("1000000000000000000", "ticket_9223372036854775807"):
        assert_error(await client.get(f"/support/tickets/{big}", headers=customer(auth)[1]), 404)


async def test_staff_can_tell_internal_notes_from_replies(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    tid = (await create(client, me))["ticketId"]
    r = await client.post(
        f"/v1/tickets/{tid[7:]}/messages",
        json={"body": "check the ledger first", "visibility": "internal"},
        headers=agent(auth),
    )
    assert r.status_code == 201, r.text
    data_of(
        await client.post(f"/support/tickets/{tid}/messages", json={"message": "hi"}, headers=me)
    )
    staff = data_of(await client.get(f"/support/tickets/{tid}", headers=agent(auth)))
    assert [(m["content"], m["visibility"]) for m in staff["messages"]] == [
        ("check the ledger first", "internal"),
        ("hi", "public"),
    ]
    mine = data_of(await client.get(f"/support/tickets/{tid}", headers=me))
    assert [(m["content"], m["visibility"]) for m in mine["messages"]] == [("hi", "public")]


async def test_a_page_past_the_64_bit_range_is_400_not_500(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = customer(auth)[1]
    for page in (10**30, 2**63 // 20 + 2):
        body = assert_error(
            await client.get("/support/tickets", params={"page": page}, headers=me), 400
        )
        assert "page" in body["error"]["message"]
    # the last page the database can skip to is still a (empty) page
    assert (
        data_of(
            await client.get(
                "/support/tickets", params={"page": 2**63 // 20, "limit": 20}, headers=me
            )
        )
        == []
    )


async def test_a_filter_given_twice_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    me = customer(auth)[1]
    for query in ("status=Open&status=Closed", "priority=Low&priority=High", "page=1&page=2"):
        body = assert_error(await client.get(f"/support/tickets?{query}", headers=me), 400)
        assert "more than once" in body["error"]["message"]


async def test_missing_mandatory_fields_name_the_field(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    for field in ("subject", "description", "categoryId"):
        body = {k: v for k, v in SEED_CREATE.items() if k != field}
        err = assert_error(await client.post("/support/tickets", json=body, headers=me), 400)
        assert field in err["error"]["message"]
    tid = (await create(client, me))["ticketId"]
    err = assert_error(
        await client.post(f"/support/tickets/{tid}/messages", json={"attachments": []}, headers=me),
        400,
    )
    assert "message" in err["error"]["message"]


async def test_openapi_documents_the_seed_fields(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]

    def body_schema(path: str) -> dict[str, Any]:
        body = doc["paths"][path]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        ref = next(s for s in (schema, *schema.get("oneOf", [])) if "$ref" in s)["$ref"]
        return schemas[ref.rsplit("/", 1)[-1]]  # type: ignore[no-any-return]

    # the seed's "Required: Yes" fields
    assert set(body_schema("/support/tickets")["required"]) == {
        "subject",
        "description",
        "categoryId",
    }
    assert body_schema("/support/tickets/{ticketId}/messages")["required"] == ["message"]
    # close: resolution is optional, and so is the body that carries it
    assert (
        doc["paths"]["/support/tickets/{ticketId}/close"]["post"]["requestBody"]["required"]
        is False
    )
    params = {p["name"]: p["schema"] for p in doc["paths"]["/support/tickets"]["get"]["parameters"]}
    assert params["page"]["type"] == params["limit"]["type"] == "integer"  # "number" in the seed
    assert "In Progress" in params["status"]["enum"]
    assert "Critical" in params["priority"]["enum"]
