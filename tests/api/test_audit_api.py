"""The /v1/audit routes through a live server: replayed state, raw events, the feed, roles."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import httpx
import pytest

Auth = Callable[..., dict[str, str]]

CUSTOMER = ("cust-aud-api", "customer")
AGENT = ("agent-aud-api", "agent")
AUDITOR = ("auditor-1", "auditor")
ADMIN = ("admin-1", "admin")


def _public_only(ticket: dict[str, Any]) -> dict[str, Any]:
    return {**ticket, "messages": [m for m in ticket["messages"] if m["visibility"] == "public"]}


async def _story(client: httpx.AsyncClient, auth: Auth) -> tuple[int, list[tuple[str, Any]]]:
    """Drive a ticket through the native API; return its id and (who, ticket seen) per step."""
    cust, agent = auth(*CUSTOMER), auth(*AGENT)
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Refund please", "description": "Charged twice", "category_id": 5},
        headers=cust,
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    seen: list[tuple[str, Any]] = [("customer", r.json())]
    steps: list[tuple[str, dict[str, str], str, dict[str, Any]]] = [
        ("agent", agent, "messages", {"body": "Looking into it"}),
        ("agent", agent, "messages", {"body": "bank says ok", "visibility": "internal"}),
        ("agent", agent, "assign", {"assignee": "agent-aud-api"}),
        ("agent", agent, "priority", {"priority": "urgent"}),
        ("agent", agent, "status", {"status": "on_hold"}),
        ("agent", agent, "status", {"status": "resolved"}),
        ("customer", cust, "rating", {"rating": 5, "comment": "quick"}),
        ("customer", cust, "reopen", {"reason": "charged again"}),
        ("customer", cust, "close", {"resolution": "refunded"}),
    ]
    for who, headers, action, body in steps:
        r = await client.post(f"/v1/tickets/{tid}/{action}", json=body, headers=headers)
        assert r.status_code in (200, 201), (action, r.status_code, r.text)
        seen.append((who, r.json()))
    return tid, seen


async def test_state_at_each_version_equals_what_the_client_saw_after_that_command(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    tid, seen = await _story(client, auth)
    for version, (who, ticket) in enumerate(seen, start=1):
        r = await client.get(
            f"/v1/audit/tickets/{tid}/state", params={"version": version}, headers=auth(*AUDITOR)
        )
        assert r.status_code == 200, r.text
        assert r.headers["etag"] == f'"{version}"'
        state = r.json()
        assert state["version"] == version
        assert (_public_only(state) if who == "customer" else state) == ticket
    # the auditor sees internal notes
    assert any(m["visibility"] == "internal" for m in state["messages"])


async def test_as_of_between_two_events_returns_the_state_after_the_earlier(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    tid, _ = await _story(client, auth)
    r = await client.get(f"/v1/audit/tickets/{tid}/events", headers=auth(*ADMIN))
    events = r.json()["items"]
    for i in range(len(events) - 1):
        a = datetime.fromisoformat(events[i]["recorded_at"])
        b = datetime.fromisoformat(events[i + 1]["recorded_at"])
        between = (a + (b - a) / 2).isoformat()
        r = await client.get(
            f"/v1/audit/tickets/{tid}/state", params={"as_of": between}, headers=auth(*AUDITOR)
        )
        assert r.status_code == 200, r.text
        assert r.json()["version"] == i + 1
        assert (
            r.json()
            == (
                await client.get(
                    f"/v1/audit/tickets/{tid}/state",
                    params={"version": i + 1},
                    headers=auth(*AUDITOR),
                )
            ).json()
        )
    # an offset other than Z is understood, even when its "+" arrives unencoded
    first = datetime.fromisoformat(events[0]["recorded_at"])
    local = first.astimezone(datetime.fromisoformat("2024-01-01T00:00:00+02:00").tzinfo)
    r = await client.get(
        f"/v1/audit/tickets/{tid}/state?as_of={local.isoformat().replace('+', '%2B')}",
        headers=auth(*AUDITOR),
    )
    assert r.status_code == 200 and r.json()["version"] == 1


async def test_state_before_the_ticket_existed_or_past_its_last_version_is_404(
    client: httpx.AsyncClient, auth: Auth, problem_of: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    tid, _ = await _story(client, auth)
    r = await client.get(f"/v1/audit/tickets/{tid}/events", headers=auth(*AUDITOR))
    before = r.json()["items"][0]["recorded_at"].replace("Z", "+00:00")
    early = datetime.fromisoformat(before).replace(year=2000).isoformat()
    for params in ({"as_of": early}, {"version": "11"}):
        r = await client.get(
            f"/v1/audit/tickets/{tid}/state", params=params, headers=auth(*AUDITOR)
        )
        assert r.status_code == 404, r.text
        assert f"ticket {tid}" in problem_of(r)["detail"]
    r = await client.get("/v1/audit/tickets/999999999999/events", headers=auth(*AUDITOR))
    assert r.status_code == 404
    for params in (
        {"as_of": "2024-01-01T00:00:00"},
        {"as_of": "yesterday"},
        {"version": "0"},
        {"version": "2", "as_of": "2024-01-01T00:00:00Z"},
        {"as_of": ""},  # was the state now
    ):
        r = await client.get(
            f"/v1/audit/tickets/{tid}/state", params=params, headers=auth(*AUDITOR)
        )
        assert r.status_code == 422, (params, r.text)
        assert problem_of(r)["detail"]
    # a parameter given twice was read as its last value
    for query in ("version=3&version=4", "as_of=2024-01-01T00:00:00Z&as_of=2025-01-01T00:00:00Z"):
        r = await client.get(f"/v1/audit/tickets/{tid}/state?{query}", headers=auth(*AUDITOR))
        assert r.status_code == 422, (query, r.text)
        assert "more than once" in problem_of(r)["detail"]
    r = await client.get("/v1/audit/events?after=0&after=5", headers=auth(*AUDITOR))
    assert r.status_code == 422 and "more than once" in problem_of(r)["detail"]


async def test_ticket_events_carry_metadata_and_a_verifiable_hash_chain(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    tid, _ = await _story(client, auth)
    r = await client.get(f"/v1/audit/tickets/{tid}/events", headers=auth(*AUDITOR))
    assert r.status_code == 200
    items = r.json()["items"]
    assert [e["version"] for e in items] == list(range(1, 11))
    assert items[0]["type"] == "TicketRaised" and items[0]["prev_hash"] is None
    for prev, e in itertools.pairwise(items):
        assert e["prev_hash"] == prev["hash"]
        assert len(e["hash"]) == 64 and int(e["hash"], 16) >= 0
    for e in items:
        assert set(e) == {
            "position",
            "stream_id",
            "version",
            "type",
            "schema",
            "data",
            "metadata",
            "occurred_at",
            "recorded_at",
            "hash",
            "prev_hash",
        }
        assert e["stream_id"] == tid
        assert e["metadata"]["dialect"] == "native"
        assert e["metadata"]["request_id"]
        assert e["metadata"]["actor"]["id"] in (CUSTOMER[0], AGENT[0])
        assert e["occurred_at"].endswith("Z") or e["occurred_at"].endswith("+00:00")
    assert [e["type"] for e in items][-1] == "TicketClosed"


async def test_the_feed_paged_with_small_limits_returns_each_event_once_in_order(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    headers = auth(*AUDITOR)
    # the current end of the feed
    cursor = 0
    while True:
        page = (
            await client.get(
                "/v1/audit/events", params={"after": cursor, "limit": 1000}, headers=headers
            )
        ).json()
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    mine = [await _story(client, auth) for _ in range(2)]
    expected: list[int] = []
    for tid, _ in mine:
        r = await client.get(f"/v1/audit/tickets/{tid}/events", headers=headers)
        expected.extend(e["position"] for e in r.json()["items"])
    got: list[int] = []
    ids = {tid for tid, _ in mine}
    for _ in range(10_000):
        r = await client.get(
            "/v1/audit/events", params={"after": cursor, "limit": 3}, headers=headers
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["items"]) <= 3
        got.extend(e["position"] for e in page["items"] if e["stream_id"] in ids)
        cursor = page["next_cursor"]
        if len(got) >= len(expected) and not page["has_more"]:
            break
    assert got == expected  # every event once, in commit order (one writer: position order)

    typed = await client.get(
        "/v1/audit/events",
        params={"after": 0, "limit": 5000, "type": "TicketRated,TicketReopened"},
        headers=headers,
    )
    assert typed.status_code == 200
    assert {e["type"] for e in typed.json()["items"]} <= {"TicketRated", "TicketReopened"}
    assert len(typed.json()["items"]) <= 1000  # the limit is capped


@pytest.mark.parametrize(
    "params",
    [
        {"after": "-1"},
        {"after": str(2**63)},  # past bigint: bad input, not a database error
        {"limit": "0"},
        {"limit": str(2**64)},
        {"type": "NoSuchEvent"},
        {"since": "last week"},
        {"since": "0001-01-01T00:00:00+05:00"},  # before year 1 in UTC: was a 500
        {"until": "9999-12-31T23:59:59-05:00"},
        {"since": ""},  # an empty moment is a mistake, not "no filter"
        {"until": "  "},
    ],
)
async def test_the_feed_rejects_bad_parameters_with_a_problem(
    client: httpx.AsyncClient,
    auth: Auth,
    params: dict[str, str],
    problem_of: Callable[[httpx.Response], dict[str, Any]],
) -> None:
    r = await client.get("/v1/audit/events", params=params, headers=auth(*AUDITOR))
    assert r.status_code in (400, 422), r.text
    assert problem_of(r)


async def test_an_unknown_cursor_is_a_client_error(
    client: httpx.AsyncClient, auth: Auth, problem_of: Callable[[httpx.Response], dict[str, Any]]
) -> None:
    r = await client.get("/v1/audit/events", params={"after": 10**15}, headers=auth(*AUDITOR))
    assert r.status_code == 422
    assert "after" in problem_of(r)["detail"]


# --- roles ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "status"),
    [("auditor", 200), ("admin", 200), ("agent", 403), ("customer", 403), (None, 401)],
)
async def test_only_auditors_and_admins_may_use_the_audit_api(
    client: httpx.AsyncClient, auth: Auth, role: str | None, status: int
) -> None:
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Role check", "description": "x", "category_id": 1},
        headers=auth("cust-role", "customer"),
    )
    tid = r.json()["id"]
    headers = auth(f"u-{role}", role) if role else {}
    for path in (
        "/v1/audit/events?limit=1",
        f"/v1/audit/tickets/{tid}/events",
        f"/v1/audit/tickets/{tid}/state",
        f"/v1/audit/tickets/{tid}/state?version=1",
    ):
        r = await client.get(path, headers=headers)
        assert r.status_code == status, (path, r.status_code, r.text)
        if status != 200:
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_an_auditor_api_user_with_basic_auth_may_read_the_feed(
    client: httpx.AsyncClient,
    basic_user: Callable[..., Awaitable[tuple[str, str]]],
    basic_auth_headers: Callable[[str, str], dict[str, str]],
) -> None:
    name, password = await basic_user("auditor")
    r = await client.get(
        "/v1/audit/events", params={"limit": 2}, headers=basic_auth_headers(name, password)
    )
    assert r.status_code == 200, r.text
    name, password = await basic_user("agent")
    r = await client.get(
        "/v1/audit/events", params={"limit": 2}, headers=basic_auth_headers(name, password)
    )
    assert r.status_code == 403


async def test_the_router_guard_refuses_non_auditors_on_its_own() -> None:
    from types import SimpleNamespace

    from domain.events import Actor
    from services.api.audit import auditors_only
    from services.api.errors import Denied, Unauthenticated

    def conn(user: object) -> Any:
        return SimpleNamespace(scope={"user": user})

    auditors_only(conn(Actor(id="a", role="auditor")), None)  # type: ignore[arg-type]
    auditors_only(conn(Actor(id="a", role="admin")), None)  # type: ignore[arg-type]
    with pytest.raises(Denied):
        auditors_only(conn(Actor(id="a", role="agent")), None)  # type: ignore[arg-type]
    with pytest.raises(Denied):
        auditors_only(conn(Actor(id="a", role="customer")), None)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated):
        auditors_only(conn(None), None)  # type: ignore[arg-type]


async def test_a_clients_correlation_and_causation_ids_reach_the_events_metadata(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    traced = {**auth(*CUSTOMER), "X-Correlation-ID": "conv-42", "X-Causation-ID": "mail:7"}
    r = await client.post(
        "/v1/tickets",
        json={"subject": "Traced", "description": "from a mail thread", "category_id": 1},
        headers={**traced, "X-Request-ID": "req-traced-1"},
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    plain = await client.post(
        f"/v1/tickets/{tid}/messages",
        json={"body": "untraced"},
        headers={**auth(*CUSTOMER), "X-Causation-ID": "not sane!"},
    )
    assert plain.status_code == 201, plain.text
    events = (await client.get(f"/v1/audit/tickets/{tid}/events", headers=auth(*AUDITOR))).json()
    raised, posted = (e["metadata"] for e in events["items"])
    assert raised["request_id"] == "req-traced-1"
    assert (raised["correlation_id"], raised["causation_id"]) == ("conv-42", "mail:7")
    # without them the request is its own correlation, and a malformed id is dropped
    assert posted["correlation_id"] == posted["request_id"]
    assert posted.get("causation_id") is None
