"""Who may run which native command: every command against every kind of principal.

Each case raises a fresh ticket (as customer A), brings it to a state where the
command is allowed in principle, then tries the command as the principal and checks
the status, the problem+json body, and that a refused command appended nothing.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

OK_201 = 201
PRINCIPALS = [
    "requester",
    "other_customer",
    "agent",
    "admin",
    "auditor",
    "no_token",
    "expired_token",
    "wrong_signature",
    "basic_agent",
    "basic_wrong_password",
    "basic_disabled",
]

# command -> (state to prepare, path suffix, body, expected status per principal)
DENY_STAFF_ONLY = {"requester": 403, "other_customer": 403}
COMMANDS: dict[str, tuple[str, str, dict[str, Any], dict[str, int]]] = {
    "message": (
        "open",
        "messages",
        {"body": "hello there"},
        {"requester": 201, "other_customer": 403, "agent": 201, "admin": 201, "basic_agent": 201},
    ),
    "assign": (
        "open",
        "assign",
        {"assignee": "agent-7"},
        {**DENY_STAFF_ONLY, "agent": 200, "admin": 200, "basic_agent": 200},
    ),
    "status": (
        "open",
        "status",
        {"status": "in_progress"},
        {**DENY_STAFF_ONLY, "agent": 200, "admin": 200, "basic_agent": 200},
    ),
    "priority": (
        "open",
        "priority",
        {"priority": "urgent"},
        {**DENY_STAFF_ONLY, "agent": 200, "admin": 200, "basic_agent": 200},
    ),
    "close": (
        "open",
        "close",
        {"resolution": "done"},
        {"requester": 200, "other_customer": 403, "agent": 200, "admin": 200, "basic_agent": 200},
    ),
    "reopen": (
        "closed",
        "reopen",
        {"reason": "not fixed"},
        {"requester": 200, "other_customer": 403, "agent": 200, "admin": 200, "basic_agent": 200},
    ),
    "rating": (
        "closed",
        "rating",
        {"rating": 4, "comment": "good"},
        {"requester": 200, "other_customer": 403, "agent": 403, "admin": 403, "basic_agent": 403},
    ),
}
UNAUTHENTICATED = {
    "no_token",
    "expired_token",
    "wrong_signature",
    "basic_wrong_password",
    "basic_disabled",
}


def basic_auth(name: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    return dict(response.json())


def expected_status(command: str, principal: str) -> int:
    if principal in UNAUTHENTICATED:
        return 401
    if principal == "auditor":
        return 403
    return COMMANDS[command][3][principal]


@pytest.fixture(scope="session")
async def principals(
    auth: Callable[..., dict[str, str]],
    basic_user: Callable[..., Awaitable[tuple[str, str]]],
    api_pool: asyncpg.Pool,
) -> dict[str, dict[str, str]]:
    agent_name, agent_pw = await basic_user("agent", display_name="Integration Agent")
    disabled_name, disabled_pw = await basic_user("agent")
    await api_pool.execute("UPDATE api_users SET disabled = true WHERE name = $1", disabled_name)
    bad = jwt.encode(
        {"sub": "x", "role": "admin", "exp": 4_102_444_800}, "wrong-secret-" + "y" * 32
    )
    return {
        "agent": auth("agent-1", "agent", "Agent One"),
        "admin": auth("admin-1", "admin"),
        "auditor": auth("auditor-1", "auditor"),
        "no_token": {},
        "expired_token": auth("agent-1", "agent", ttl=-60),
        "wrong_signature": {"Authorization": f"Bearer {bad}"},
        "basic_agent": basic_auth(agent_name, agent_pw),
        "basic_wrong_password": basic_auth(agent_name, agent_pw + "x"),
        "basic_disabled": basic_auth(disabled_name, disabled_pw),
    }


async def stream_length(pool: asyncpg.Pool, ticket_id: int) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = $1", ticket_id))


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("command", list(COMMANDS))
async def test_command_authorization(
    command: str,
    principal: str,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    principals: dict[str, dict[str, str]],
    api_pool: asyncpg.Pool,
) -> None:
    requester = f"cust-{uuid.uuid4().hex[:8]}"
    owner = auth(requester, "customer", "Requester")
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Printer on fire", "description": "It is on fire", "category_id": 1},
        headers=owner,
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    state, suffix, body, _ = COMMANDS[command]
    if state == "closed":
        r = await client.post(f"/v1/tickets/{tid}/close", json={}, headers=owner)
        assert r.status_code == 200, r.text
    headers = {
        **principals,
        "requester": owner,
        "other_customer": auth(f"other-{uuid.uuid4().hex[:8]}", "customer"),
    }[principal]
    before = await stream_length(api_pool, tid)

    r = await client.post(f"/v1/tickets/{tid}/{suffix}", json=body, headers=headers)

    want = expected_status(command, principal)
    assert r.status_code == want, (command, principal, r.status_code, r.text)
    after = await stream_length(api_pool, tid)
    if want >= 400:
        body_out = problem(r)
        assert body_out["status"] == want
        assert body_out["detail"]
        assert after == before, "a refused command appended events"
        if want == 401:
            assert "Bearer" in r.headers["www-authenticate"]
    else:
        assert after > before
        assert r.headers["etag"] == f'"{r.json()["version"]}"'


@pytest.mark.parametrize(
    "principal,want",
    [("customer", 201), ("agent", 201), ("admin", 201), ("auditor", 403), ("none", 401)],
)
async def test_raise_authorization(
    principal: str,
    want: int,
    client: httpx.AsyncClient,
    auth: Callable[..., dict[str, str]],
    event_count: Callable[[], Awaitable[int]],
) -> None:
    headers = {} if principal == "none" else auth(f"{principal}-x", principal)
    before = await event_count()
    r = await client.post(
        "/v1/tickets",
        json={"subject": "s", "description": "d", "category_id": 1},
        headers=headers,
    )
    assert r.status_code == want, r.text
    if want == 201:
        assert r.json()["requester"]["id"] == f"{principal}-x"
    else:
        problem(r)
        # other tests may append concurrently only in other sessions; this one is serial
        assert await event_count() == before


async def test_basic_customer_raises_as_itself(
    client: httpx.AsyncClient, basic_user: Callable[..., Awaitable[tuple[str, str]]]
) -> None:
    name, pw = await basic_user("customer", display_name="Shop Integration")
    r = await client.post(
        "/v1/tickets",
        json={"subject": "s", "description": "d", "category_id": 1},
        headers=basic_auth(name, pw),
    )
    assert r.status_code == 201, r.text
    assert r.json()["requester"] == {"id": name, "role": "customer", "name": "Shop Integration"}
    # the second request is served from the credential cache and still works
    r = await client.get(f"/v1/tickets/{r.json()['id']}", headers=basic_auth(name, pw))
    assert r.status_code == 200


async def test_unknown_basic_user_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/tickets", headers=basic_auth("nobody-" + uuid.uuid4().hex, "pw"))
    assert r.status_code == 401
    assert problem(r)["status"] == 401


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer not.a.jwt", "Token abc", "Basic !!!notbase64", "Basic " + "bm9jb2xvbg=="],
)
async def test_malformed_credentials_are_401(client: httpx.AsyncClient, header: str) -> None:
    r = await client.get("/v1/tickets", headers={"Authorization": header})
    assert r.status_code == 401, r.text
    assert problem(r)["detail"]
