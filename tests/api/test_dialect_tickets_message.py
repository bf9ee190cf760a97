"""Dialect tickets_message (seed 000): POST /api/tickets/message, its example and its errors."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime

import httpx
import pytest

Auth = Callable[..., dict[str, str]]


def customer(auth: Auth) -> dict[str, str]:
    return auth(f"cust-{uuid.uuid4().hex[:8]}", "customer", "Cara Customer")


async def raise_ticket(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    r = await client.post(
        "/support/tickets",
        json={"subject": "Card declined", "description": "It fails", "categoryId": "1"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["ticketId"].removeprefix("ticket_"))


def assert_error(r: httpx.Response, status: int) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and body["message"]
    return body  # type: ignore[no-any-return]


async def test_seed_example_adds_a_message_with_string_ticket_id(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    r = await client.post(
        "/api/tickets/message",
        json={"ticketId": str(ticket_id), "text": "Can you provide an update on the issue?"},
        headers={**me, "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert body["message"] == "Message added to ticket successfully."
    assert body["ticketId"] == str(ticket_id)
    assert isinstance(body["commentId"], str) and body["commentId"].isdigit()
    assert body["createdDate"].endswith("Z")
    datetime.fromisoformat(body["createdDate"].replace("Z", "+00:00"))

    details = (await client.get(f"/support/tickets/{ticket_id}", headers=me)).json()["data"]
    assert [m["content"] for m in details["messages"]] == [
        "Can you provide an update on the issue?"
    ]
    assert details["messages"][0]["messageId"] == f"msg_{body['commentId']}"


async def test_an_integer_ticket_id_works_too(client: httpx.AsyncClient, auth: Auth) -> None:
    me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    r = await client.post(
        "/api/tickets/message", json={"ticketId": ticket_id, "text": "hi"}, headers=me
    )
    assert r.status_code == 200, r.text
    assert r.json()["ticketId"] == str(ticket_id)


@pytest.mark.parametrize(
    "payload",
    [
        {"text": "no ticket"},
        {"ticketId": "1"},
        {"ticketId": "abc", "text": "x"},
        {"ticketId": "1", "text": "   "},
        {"ticketId": "1", "text": 5},
    ],
    ids=[
        "missing-ticketId",
        "missing-text",
        "non-numeric-ticketId",
        "blank-text",
        "text-not-string",
    ],
)
async def test_missing_or_invalid_fields_are_400(
    client: httpx.AsyncClient, auth: Auth, payload: dict[str, object]
) -> None:
    me = customer(auth)
    if payload.get("ticketId") == "1":
        payload = {**payload, "ticketId": str(await raise_ticket(client, me))}
    r = await client.post("/api/tickets/message", json=payload, headers=me)
    assert_error(r, 400)


async def test_a_wrongly_typed_field_is_named_in_plain_words(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    me = customer(auth)
    n = await raise_ticket(client, me)
    r = await client.post("/api/tickets/message", json={"ticketId": n, "text": 5}, headers=me)
    message = str(assert_error(r, 400)["message"])
    assert "text" in message and "must be a string, not a whole number" in message
    assert "null" not in message  # the field is required: null is not an option


async def test_malformed_json_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    r = await client.post(
        "/api/tickets/message",
        content=b"{not json",
        headers={**customer(auth), "Content-Type": "application/json"},
    )
    assert_error(r, 400)


async def test_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/tickets/message", json={"ticketId": "1", "text": "x"})
    assert_error(r, 401)
    r = await client.post(
        "/api/tickets/message",
        json={"ticketId": "1", "text": "x"},
        headers={"Authorization": "Bearer not-a-token"},
    )
    assert_error(r, 401)


async def test_another_customers_ticket_is_403(client: httpx.AsyncClient, auth: Auth) -> None:
    ticket_id = await raise_ticket(client, customer(auth))
    r = await client.post(
        "/api/tickets/message",
        json={"ticketId": ticket_id, "text": "let me in"},
        headers=customer(auth),
    )
    body = assert_error(r, 403)
    assert "customer" in str(body["message"]).lower()


async def test_unknown_ticket_is_404(client: httpx.AsyncClient, auth: Auth) -> None:
    r = await client.post(
        "/api/tickets/message",
        json={"ticketId": "987654321", "text": "anyone?"},
        headers=customer(auth),
    )
    assert_error(r, 404)


async def test_the_openapi_document_says_both_fields_are_required(
    client: httpx.AsyncClient,
) -> None:
    """Seed 000: ticketId (int32, required), text (string, required); neither is nullable."""
    doc = (await client.get("/schema/openapi.json")).json()
    ref = doc["paths"]["/api/tickets/message"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert sorted(schema["required"]) == ["text", "ticketId"]
    ticket_types = {s["type"] for s in schema["properties"]["ticketId"]["oneOf"]}
    assert ticket_types == {"integer", "string"}
    assert schema["properties"]["text"]["type"] == "string"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"ticketId": None, "text": "x"}, "ticketId"), ({"ticketId": "{t}", "text": None}, "text")],
    ids=["null-ticketId", "null-text"],
)
async def test_a_null_required_field_is_400_naming_it_and_appends_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    event_count: Callable[[], Awaitable[int]],
    payload: dict[str, object],
    field: str,
) -> None:
    me = customer(auth)
    n = await raise_ticket(client, me)
    payload = {k: str(n) if v == "{t}" else v for k, v in payload.items()}
    before = await event_count()
    r = await client.post("/api/tickets/message", json=payload, headers=me)
    assert field in str(assert_error(r, 400)["message"])
    assert await event_count() == before
