"""Conformance: wrong types, missing bodies, field names in errors and NUL characters.

Found by black-box checks against SPEC sections 2 and 8: every malformed request is a
400 (422 native) in the dialect's envelope that names the field the client sent, never
a 500, and appends nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest

from services.settings import Settings

Auth = Callable[..., dict[str, str]]
Count = Callable[[], Awaitable[int]]


def _who(auth: Auth, role: str) -> tuple[str, dict[str, str]]:
    sub = f"{role}-{uuid.uuid4().hex[:8]}"
    return sub, auth(sub, role, f"{role.title()} Tester")


async def _ticket(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Conformance", "description": "inputs", "category_id": 1},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _message_of(r: httpx.Response) -> str:
    body: dict[str, Any] = r.json()
    if "error" in body and isinstance(body["error"], dict):  # support
        return str(body["error"]["message"])
    if "detail" in body:  # native problem+json
        return str(body["detail"])
    return str(body["message"])


# --- wrong types ---------------------------------------------------------------------------


async def test_customer_response_refuses_a_non_string_body(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    _, me = _who(auth, "customer")
    ticket = await _ticket(client, me)
    before = await event_count()
    r = await client.post(f"/api/tickets/{ticket}/customer_response", json={"body": 5}, headers=me)
    assert r.status_code == 400, r.text
    assert r.json() == {"message": "body must be a string"}
    assert await event_count() == before


async def test_helpdesk_text_fields_refuse_numbers_but_user_ids_may_be_numeric(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    _, agent = _who(auth, "agent")
    before = await event_count()
    r = await client.post(
        "/api/v1/raise_ticket",
        json={"type": "General", "subject": 5, "userId": 6, "comments": "d"},
        headers=agent,
    )
    assert r.status_code == 400, r.text
    assert r.json()["errorCode"] == 400 and "subject" in r.json()["message"]
    assert await event_count() == before
    r = await client.post(
        "/api/v1/raise_ticket",
        json={"type": "General", "subject": "s", "userId": 6, "comments": "d"},
        headers=agent,
    )
    assert r.status_code == 200, r.text
    details = await client.get(f"/v1/tickets/{r.json()['ticketId']}", headers=agent)
    assert details.json()["requester"]["id"] == "6"


# --- errors name the dialect's fields --------------------------------------------------------

LONG = "x" * 20_001


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/tickets/message", {"ticketId": "{t}", "text": LONG}, "text"),
        ("POST", "/support/tickets/{t}/messages", {"message": LONG}, "message"),
        ("POST", "/backend/api/support-ticket/{t}", {"message": LONG}, "message"),
        (
            "POST",
            "/api/v1/send_message",
            {
                "ticketId": "{t}",
                "ticketMessage": LONG,
                "sender": "user",
                "sender_name": "max",
                "showToUser": "true",
            },
            "ticketMessage",
        ),
        (
            "POST",
            "/api/v1/raise_ticket",
            {"type": "General", "subject": "s", "userId": "{me}", "comments": LONG},
            "comments",
        ),
    ],
)
async def test_length_errors_name_the_field_the_dialect_documents(
    client: httpx.AsyncClient,
    auth: Auth,
    event_count: Count,
    method: str,
    path: str,
    body: dict[str, str],
    field: str,
) -> None:
    sub, me = _who(auth, "customer")
    ticket = await _ticket(client, me)
    fill = {"{t}": str(ticket), "{me}": sub}
    payload = {k: fill.get(v, v) for k, v in body.items()}
    before = await event_count()
    r = await client.request(method, path.replace("{t}", str(ticket)), json=payload, headers=me)
    assert r.status_code == 400, r.text
    message = _message_of(r)
    assert message.startswith(f"{field} is 20001 characters long"), message
    assert "body" not in message
    assert await event_count() == before


async def test_helpdesk_rating_and_reopen_errors_name_their_fields(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = _who(auth, "customer")
    ticket = await _ticket(client, me)
    r = await client.post(f"/v1/tickets/{ticket}/close", json={}, headers=me)
    assert r.status_code == 200, r.text
    r = await client.post(
        "/api/v1/ticket_rating",
        json={"ticketId": ticket, "userId": sub, "ratingValue": "9"},
        headers=me,
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("ratingValue "), r.text
    r = await client.post(
        "/api/v1/reopen_ticket",
        json={"ticketId": ticket, "userId": sub, "comments": "x" * 2_001},
        headers=me,
    )
    assert r.status_code == 400, r.text
    assert r.json()["message"].startswith("comments "), r.text


async def test_missing_body_and_missing_fields_are_named(
    client: httpx.AsyncClient, auth: Auth, problem_of: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    _, me = _who(auth, "customer")
    ticket = await _ticket(client, me)
    json_ct = {**me, "Content-Type": "application/json"}

    r = await client.post("/api/tickets/message", headers=json_ct)
    assert r.status_code == 400, r.text
    assert "no body" in r.json()["message"]
    assert "'data'" not in r.json()["message"]

    r = await client.post("/v1/tickets", headers=json_ct)
    p = problem_of(r)
    assert r.status_code == 422 and p["errors"] == [
        {"field": "body", "message": "the request has no body; send a JSON object"}
    ]

    r = await client.post(f"/v1/tickets/{ticket}/reopen", json={}, headers=me)
    p = problem_of(r)
    assert r.status_code == 422
    assert p["errors"] == [{"field": "reason", "message": "this field is required"}]

    r = await client.post(
        "/v1/tickets",
        json={"subject": "a", "description": "b", "category_id": 1, "surprise": 1},
        headers=me,
    )
    assert problem_of(r)["errors"][0]["field"] == "surprise"

    r = await client.post(
        f"/backend/api/support-ticket/{ticket}",
        json={"message": "m", "attachments": [{"fileName": "a.pdf"}]},
        headers=me,
    )
    assert r.status_code == 400, r.text
    assert "attachments[0].filePath" in r.json()["message"]


# --- NUL characters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/tickets?assignee=a%00b", 422),
        ("/v1/tickets?requester=a%00b", 422),
        ("/backend/api/support-ticket?keyword=a%00b", 400),
        ("/api/v1/get_tickets/0/open/a%00b", 400),
        ("/api/v1/get_tickets/a%00b", 400),
        ("/v1/attachments/a%00b", 422),
    ],
)
async def test_nul_in_a_query_or_path_is_a_client_error_not_a_500(
    client: httpx.AsyncClient, auth: Auth, path: str, status: int
) -> None:
    _, agent = _who(auth, "agent")
    r = await client.get(path, headers=agent)
    assert r.status_code == status, r.text
    assert "NUL" in _message_of(r)


async def test_helpdesk_unknown_type_with_nul_is_a_400(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    sub, me = _who(auth, "customer")
    before = await event_count()
    r = await client.post(
        "/api/v1/raise_ticket",
        json={"type": "Gen\u0000eral", "subject": "s", "userId": sub, "comments": "d"},
        headers=me,
    )
    assert r.status_code == 400, r.text
    assert r.json()["status"] == "error" and r.json()["errorCode"] == 400
    assert await event_count() == before


async def test_a_requester_id_with_control_characters_is_refused_and_appends_nothing(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    """Such an id used to be stored in the log, where every projection then refused it."""
    _, agent = _who(auth, "agent")
    before = await event_count()
    r = await client.post(
        "/v1/tickets",
        json={
            "subject": "s",
            "description": "d",
            "category_id": 1,
            "requester": {"id": "cust\u0000omer"},
        },
        headers=agent,
    )
    assert r.status_code == 422, r.text
    assert "requester" in r.json()["detail"]
    r = await client.post(
        "/api/v1/raise_ticket",
        json={"type": "General", "subject": "s", "userId": "c\u00001", "comments": "d"},
        headers=agent,
    )
    assert r.status_code == 400, r.text
    assert "requester" in r.json()["message"]
    r = await client.post(
        "/v1/tickets",
        json={
            "subject": "s",
            "description": "d",
            "category_id": 1,
            "requester": {"id": "c2", "name": "Bad\u0007Name"},
        },
        headers=agent,
    )
    assert r.status_code == 422, r.text
    assert await event_count() == before


async def test_a_token_whose_sub_has_control_characters_is_a_401(
    client: httpx.AsyncClient, api_settings: Settings
) -> None:
    assert api_settings.jwt_secret
    token = jwt.encode(
        {"sub": "x\u0000y", "role": "agent", "exp": int(time.time()) + 60},
        api_settings.jwt_secret,
        algorithm="HS256",
    )
    for path in ("/v1/tickets", "/support/tickets"):
        r = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, r.text
        assert "control characters" in r.text
