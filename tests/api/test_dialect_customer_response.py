"""Dialect customer_response (seed 001): a customer's reply posted by an integration."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from domain.events import Actor
from services.commands import CommandService, Context
from services.settings import Settings

Auth = Callable[..., dict[str, str]]
BasicUser = Callable[..., Awaitable[tuple[str, str]]]


def customer(auth: Auth) -> tuple[str, dict[str, str]]:
    sub = f"cust-{uuid.uuid4().hex[:8]}"
    return sub, auth(sub, "customer", "Cara Customer")


async def raise_ticket(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    r = await client.post(
        "/support/tickets",
        json={"subject": "Router offline", "description": "No lights", "categoryId": "1"},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["ticketId"].removeprefix("ticket_"))


async def details(client: httpx.AsyncClient, ticket_id: int, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    r = await client.get(f"/backend/api/support-ticket/{ticket_id}", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()["data"]  # type: ignore[no-any-return]


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"message"}
    assert isinstance(body["message"], str) and body["message"]


async def test_seed_example_with_http_basic_answers_200_empty_and_is_authored_by_the_requester(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser
) -> None:
    sub, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    name, password = await basic_user("agent")
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        content=b'{"body":"Hello world."}',
        headers={"Content-Type": "application/json; charset=utf-8"},
        auth=(name, password),
    )
    assert r.status_code == 200, r.text
    assert r.content == b""
    data = await details(client, ticket_id, me)
    [msg] = data["ticketMessage"]
    assert msg["message"] == "Hello world."  # HTML by default; plain text survives sanitising
    assert msg["senderId"] == sub
    assert msg["senderType"] == "customer"


async def test_html_is_sanitised_and_plain_is_kept_verbatim(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    creds = await basic_user("agent")
    url = f"/api/tickets/{ticket_id}/customer_response"
    r1 = await client.post(url, json={"body": "<p>Hi</p><script>alert(1)</script>"}, auth=creds)
    r2 = await client.post(url, json={"body": "<b>as typed</b>", "body_type": "PLAIN"}, auth=creds)
    assert (r1.status_code, r2.status_code) == (200, 200), (r1.text, r2.text)
    msgs = (await details(client, ticket_id, me))["ticketMessage"]
    assert [m["message"] for m in msgs] == ["<p>Hi</p>", "<b>as typed</b>"]


async def test_the_clients_date_becomes_the_events_occurred_at(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser, api_pool: asyncpg.Pool
) -> None:
    sub, _ = customer(auth)
    # a ticket raised in 2014 (a command service whose clock says so)
    old = CommandService(
        api_pool, Settings().sla_policy, clock=lambda: datetime(2014, 7, 1, tzinfo=UTC)
    )
    ticket_id = (
        await old.raise_ticket(
            Context(actor=Actor(id=sub, role="customer")),
            subject="Router offline",
            description="No lights",
            category_id=1,
        )
    ).ticket.id
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        json={"body": "Reply written offline", "body_type": "PLAIN", "date": "2014-07-14 12:34"},
        auth=await basic_user("agent"),
    )
    assert r.status_code == 200, r.text
    row = await api_pool.fetchrow(
        "SELECT occurred_at, recorded_at, metadata FROM events WHERE stream_id = $1 "
        "AND type = 'MessagePosted'",
        ticket_id,
    )
    assert row["occurred_at"] == datetime(2014, 7, 14, 12, 34, tzinfo=UTC)  # test server: UTC
    assert row["recorded_at"] > row["occurred_at"]
    assert '"customer_response"' in row["metadata"]


async def test_a_date_ahead_within_the_clock_skew_is_recorded_as_now(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser, api_pool: asyncpg.Pool
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    ahead = datetime.now(UTC) + timedelta(minutes=3)
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        json={"body": "from a fast clock", "date": f"{ahead:%Y-%m-%d %H:%M}"},
        auth=await basic_user("agent"),
    )
    assert r.status_code == 200, r.text
    row = await api_pool.fetchrow(
        "SELECT occurred_at, recorded_at FROM events WHERE stream_id = $1 "
        "AND type = 'MessagePosted'",
        ticket_id,
    )
    assert row["occurred_at"] == row["recorded_at"]  # never a time that has not come yet


async def test_a_customer_may_reply_to_their_own_ticket_with_a_bearer_token(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        data={"body": "form-encoded works"},
        headers=me,
    )
    assert r.status_code == 200, r.text
    [msg] = (await details(client, ticket_id, me))["ticketMessage"]
    assert (msg["senderId"], msg["message"]) == (sub, "form-encoded works")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"body": ""},
        {"body": "x", "body_type": "MARKDOWN"},
        {"body": "x", "date": "14.07.2014"},
        {"body": "<script>only</script>"},
        {"body": "<p></p><br>&nbsp;"},
        {"body": "a&#x7;b"},
    ],
    ids=[
        "no-body",
        "empty-body",
        "bad-body-type",
        "bad-date",
        "nothing-left-after-sanitising",
        "only-empty-tags",
        "control-character-reference",
    ],
)
async def test_invalid_replies_are_400(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser, payload: dict[str, str]
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response", json=payload, auth=await basic_user("agent")
    )
    assert_error(r, 400)


async def test_a_non_numeric_id_is_400(client: httpx.AsyncClient, basic_user: BasicUser) -> None:
    r = await client.post(
        "/api/tickets/abc/customer_response", json={"body": "x"}, auth=await basic_user("agent")
    )
    assert_error(r, 400)


async def test_missing_or_wrong_credentials_are_401(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    url = f"/api/tickets/{ticket_id}/customer_response"
    assert_error(await client.post(url, json={"body": "x"}), 401)
    name, _ = await basic_user("agent")
    assert_error(await client.post(url, json={"body": "x"}, auth=(name, "wrong-password")), 401)


async def test_another_customers_ticket_is_403(client: httpx.AsyncClient, auth: Auth) -> None:
    _, owner = customer(auth)
    ticket_id = await raise_ticket(client, owner)
    _, other = customer(auth)
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response", json={"body": "x"}, headers=other
    )
    assert_error(r, 403)


async def test_an_auditor_may_not_reply_403(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        json={"body": "x"},
        auth=await basic_user("auditor"),
    )
    assert_error(r, 403)


async def test_unknown_ticket_is_404(client: httpx.AsyncClient, basic_user: BasicUser) -> None:
    r = await client.post(
        "/api/tickets/987654321/customer_response",
        json={"body": "x"},
        auth=await basic_user("agent"),
    )
    assert_error(r, 404)


async def test_a_date_before_the_ticket_was_raised_is_400_and_its_first_minute_counts_as_then(
    client: httpx.AsyncClient,
    auth: Auth,
    basic_user: BasicUser,
    event_count: Callable[[], Awaitable[int]],
    api_pool: asyncpg.Pool,
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    raised = await api_pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND version = 1", ticket_id
    )
    before = await event_count()
    for date in ("1970-01-01 00:00", (raised - timedelta(minutes=1)).strftime("%Y-%m-%d %H:%M")):
        r = await client.post(
            f"/api/tickets/{ticket_id}/customer_response",
            json={"body": "x", "date": date},
            auth=await basic_user("agent"),
        )
        assert_error(r, 400)
        assert "before the ticket was raised" in r.json()["message"], r.text
    assert await event_count() == before
    # the minute it was raised in (the date's own precision) is recorded as the raise time
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        json={"body": "x", "date": raised.strftime("%Y-%m-%d %H:%M")},
        auth=await basic_user("agent"),
    )
    assert r.status_code == 200, r.text
    at = await api_pool.fetchval(
        "SELECT occurred_at FROM events WHERE stream_id = $1 AND version = 2", ticket_id
    )
    assert at == raised


async def test_a_date_before_1970_is_400_and_appends_nothing(
    client: httpx.AsyncClient,
    auth: Auth,
    basic_user: BasicUser,
    event_count: Callable[[], Awaitable[int]],
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    before = await event_count()
    r = await client.post(
        f"/api/tickets/{ticket_id}/customer_response",
        json={"body": "x", "date": "1969-12-31 23:59"},
        auth=await basic_user("agent"),
    )
    assert_error(r, 400)
    assert "date" in r.json()["message"]
    assert await event_count() == before


@pytest.mark.parametrize(
    ("zone", "date"),
    [
        # reads back from PostgreSQL as asyncpg's naive -infinity: every later read of the
        # ticket failed and the projections stopped on it
        ("UTC", "0001-01-01 00:00"),
        ("Europe/Warsaw", "0001-01-01 00:00"),  # overflowed when moved to UTC: was a 500
        ("America/New_York", "9999-12-31 23:59"),  # likewise
    ],
    ids=["first-instant-utc", "year-1-east-of-utc", "year-9999-west-of-utc"],
)
async def test_a_date_at_the_ends_of_the_calendar_is_400_and_the_ticket_stays_readable(
    auth: Auth, start_live_server: Callable[..., Awaitable[Any]], zone: str, date: str
) -> None:
    server = await start_live_server(timezone=zone)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        _, me = customer(auth)
        ticket_id = await raise_ticket(c, me)
        r = await c.post(
            f"/api/tickets/{ticket_id}/customer_response",
            json={"body": "from the dawn of time", "date": date},
            headers=me,
        )
        assert_error(r, 400)
        assert "date" in r.json()["message"]
        assert (await details(c, ticket_id, me))["ticketMessage"] == []
        r = await c.post(
            f"/api/tickets/{ticket_id}/customer_response",
            json={"body": "later"},
            headers=me,
        )
        assert r.status_code == 200, r.text
        [msg] = (await details(c, ticket_id, me))["ticketMessage"]
        assert msg["message"] == "later"


async def test_a_file_in_a_multipart_reply_is_400_not_silently_dropped(
    client: httpx.AsyncClient,
    auth: Auth,
    basic_user: BasicUser,
    event_count: Callable[[], Awaitable[int]],
) -> None:
    _, me = customer(auth)
    ticket_id = await raise_ticket(client, me)
    url = f"/api/tickets/{ticket_id}/customer_response"
    creds = await basic_user("agent")
    before = await event_count()
    r = await client.post(
        url,
        data={"body": "see the attached log"},
        files={"attachment": ("router.log", b"link down", "text/plain")},
        auth=creds,
    )
    assert_error(r, 400)
    assert "attachment" in r.json()["message"] and "file" in r.json()["message"]
    assert await event_count() == before
    # a multipart body of plain fields is still a reply
    r = await client.post(url, files={"body": (None, "multipart works")}, auth=creds)
    assert r.status_code == 200, r.text
    [msg] = (await details(client, ticket_id, me))["ticketMessage"]
    assert msg["message"] == "multipart works"
