"""Dialect helpdesk_v1 (seed 003): the eight /api/v1 operations, JSON or form bodies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

Auth = Callable[..., dict[str, str]]
Count = Callable[[], Awaitable[int]]
LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


def customer(auth: Auth) -> tuple[str, dict[str, str]]:
    sub = str(uuid.uuid4().int % 10**9)  # the seed's user ids are numeric
    return sub, auth(sub, "customer", "max")


def agent(auth: Auth, sub: str = "admin@isp.example") -> dict[str, str]:
    return auth(sub, "agent", sub)


def ok(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "success"
    assert body["errorCode"] == 200
    return body


def assert_error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == "error"
    assert body["errorCode"] == status
    assert isinstance(body["message"], str) and body["message"]
    return str(body["message"])


async def raise_for(
    client: httpx.AsyncClient, headers: dict[str, str], user_id: str, **extra: str
) -> int:
    form = {
        "type": "Payment Issues",
        "subject": "Unable to pay online",
        "priority": "medium",
        "userId": user_id,
        "comments": "connection timeout",
        **extra,
    }
    body = ok(await client.post("/api/v1/raise_ticket", data=form, headers=headers))
    return int(body["ticketId"])


async def details(
    client: httpx.AsyncClient, ticket_id: int, headers: dict[str, str]
) -> dict[str, Any]:
    r = await client.get(f"/api/v1/get_ticket_details/{ticket_id}", headers=headers)
    message: dict[str, Any] = ok(r)["message"]
    return message


# --- V1 ----------------------------------------------------------------------------------


async def test_v1_an_agent_raises_for_a_customer_with_form_data(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    r = await client.post(
        "/api/v1/raise_ticket",
        data={
            "type": "Payment Issues",
            "subject": "Unable to pay online",
            "priority": "medium",
            "userId": sub,
            "comments": "connection timeout",
            "closeTicketImmediately": "false",
        },
        headers=agent(auth),
    )
    body = ok(r)
    assert isinstance(body["ticketId"], str) and body["ticketId"].isdigit()
    assert body["message"] == (
        f"Your ticket with the ID {body['ticketId']} has been raised. Please wait for the response "
        "and note the ticket Id for future reference."
    )
    d = await details(client, int(body["ticketId"]), me)  # the customer is the requester
    assert d["ticket_details"]["user"] == sub
    assert d["ticket_details"]["type"] == "Payment Issues"
    assert d["ticket_details"]["description"] == "connection timeout"


async def test_v1_a_customer_raises_as_themselves_with_json(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    body = ok(
        await client.post(
            "/api/v1/raise_ticket",
            json={
                "type": "payment issues",
                "subject": "Slow",
                "userId": int(sub),
                "comments": "slow line",
            },
            headers=me,
        )
    )
    d = await details(client, int(body["ticketId"]), me)
    assert d["ticket_details"]["priority"] == "medium"
    assert d["ticket_details"]["status"] == "open"


async def test_v1_close_immediately_with_resolution_fields(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    n = await raise_for(
        client,
        agent(auth),
        sub,
        closeTicketImmediately="true",
        resolutionType="Solved on call",
        resolutionSubject="Reset the modem",
    )
    assert (await details(client, n, me))["ticket_details"]["status"] == "closed"
    native = (await client.get(f"/v1/tickets/{n}", headers=me)).json()
    assert native["status"] == "closed"


async def test_v1_unknown_type_is_400_listing_the_known_names(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    r = await client.post(
        "/api/v1/raise_ticket",
        data={"type": "Wormholes", "subject": "s", "userId": sub, "comments": "c"},
        headers=me,
    )
    message = assert_error(r, 400)
    assert "Wormholes" in message and "Payment Issues" in message and "General" in message


@pytest.mark.parametrize(
    "changes",
    [
        {"subject": ""},
        {"comments": None},
        {"userId": None},
        {"type": None},
        {"priority": "asap"},
        {"closeTicketImmediately": "true"},
        {"closeTicketImmediately": "maybe"},
    ],
    ids=[
        "empty-subject",
        "no-comments",
        "no-userId",
        "no-type",
        "bad-priority",
        "close-without-resolution",
        "bad-flag",
    ],
)
async def test_v1_invalid_input_is_400(
    client: httpx.AsyncClient, auth: Auth, changes: dict[str, Any]
) -> None:
    sub, me = customer(auth)
    form = {"type": "General", "subject": "s", "userId": sub, "comments": "c", **changes}
    r = await client.post(
        "/api/v1/raise_ticket", data={k: v for k, v in form.items() if v is not None}, headers=me
    )
    assert_error(r, 400)


async def test_v1_user_id_as_a_json_float_or_0(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    form = {"type": "General", "subject": "s", "comments": "c"}
    ok(await client.post("/api/v1/raise_ticket", json={**form, "userId": float(sub)}, headers=me))
    r = await client.post("/api/v1/raise_ticket", json={**form, "userId": 0}, headers=agent(auth))
    assert "all users" in assert_error(r, 400)
    r = await client.post("/api/v1/raise_ticket", json={**form, "userId": [6]}, headers=me)
    assert "userId must be a whole number or a string" in assert_error(r, 400)


async def test_v1_a_customer_may_not_raise_for_someone_else(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    r = await client.post(
        "/api/v1/raise_ticket",
        data={"type": "General", "subject": "s", "userId": "424242", "comments": "c"},
        headers=me,
    )
    assert_error(r, 403)


# --- V2 ----------------------------------------------------------------------------------


async def test_v2_pages_through_every_ticket_with_limit_and_offset(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    raised = [await raise_for(client, staff, sub) for _ in range(5)]

    async def page(query: str = "", **form: str) -> list[int]:
        path = f"/api/v1/get_tickets/{sub}{query}"
        r = await (
            client.post(path, data=form, headers=me) if form else client.get(path, headers=me)
        )
        return [int(i["Ticket"]["id"]) for i in ok(r)["data"]]

    newest_first = list(reversed(raised))
    assert await page() == newest_first
    assert await page("?limit=2") == newest_first[:2]
    assert await page("?limit=2&offset=2") == newest_first[2:4]
    assert await page(limit="2", offset="4") == newest_first[4:]
    assert await page("?offset=5") == []
    for bad in (
        "?limit=0",
        "?offset=-1",
        "?limit=many",
        "?offset=99999999999999999999999",  # past the database's bigint: was a 500
        "?offset=%D9%A3",  # an Arabic-Indic three: not read as 3
        "?limit=2.7",  # not rounded down to 2
    ):
        assert_error(await client.get(f"/api/v1/get_tickets/{sub}{bad}", headers=me), 400)
    r = await client.post(f"/api/v1/get_tickets/{sub}", json={"offset": 1e30}, headers=me)
    assert_error(r, 400)
    assert await page(limit="2.0") == newest_first[:2]  # a whole number written as such


async def test_v2_seed_shape_and_filters(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    body = ok(await client.get(f"/api/v1/get_tickets/{sub}", headers=me))
    [item] = body["data"]
    t = item["Ticket"]
    assert set(t) == {
        "id",
        "account_id",
        "user",
        "subject",
        "type",
        "priority",
        "due",
        "status",
        "assigned_to",
        "group_name",
        "created",
    }
    assert t["id"] == str(n) and t["user"] == sub
    assert t["subject"] == "Unable to pay online"
    assert t["type"] == t["group_name"] == "Payment Issues"
    assert t["priority"] == "medium" and t["status"] == "open" and t["assigned_to"] == "NULL"
    assert LOCAL_TIME.match(t["due"]) and LOCAL_TIME.match(t["created"])
    due = datetime.strptime(t["due"], "%Y-%m-%d %H:%M:%S")
    created = datetime.strptime(t["created"], "%Y-%m-%d %H:%M:%S")
    assert due - created == timedelta(hours=72)  # medium resolution target (test server: UTC)

    async def ids(path: str, headers: dict[str, str] = staff) -> set[str]:
        return {i["Ticket"]["id"] for i in ok(await client.get(path, headers=headers))["data"]}

    assert str(n) in await ids("/api/v1/get_tickets/0/unresolved")
    assert str(n) in await ids(f"/api/v1/get_tickets/{sub}/unassigned")
    assert str(n) in await ids(f"/api/v1/get_tickets/{sub}/open")
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/duetoday")  # due in 72 h
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/overdue")
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/closed")
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/onhold")

    ok(
        await client.post(
            "/api/v1/assign_ticket_to_admin",
            data={"ticketId": n, "admin": "admin@isp.example"},
            headers=staff,
        )
    )
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/unassigned")
    assert str(n) in await ids(f"/api/v1/get_tickets/{sub}/open/admin@isp.example")
    assert str(n) not in await ids(f"/api/v1/get_tickets/{sub}/open/someone-else")
    r = await client.put(f"/backend/api/support-ticket/{n}", json={"status": 3}, headers=staff)
    assert r.status_code == 200, r.text
    assert str(n) in await ids(f"/api/v1/get_tickets/{sub}/onhold", me)
    assert str(n) in await ids(f"/api/v1/get_tickets/{sub}/unresolved", me)


async def test_v2_duetoday_follows_the_resolution_due_time(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    urgent = await raise_for(client, agent(auth), sub, priority="urgent")  # due in 4 h
    low = await raise_for(client, agent(auth), sub, priority="low")  # due in 7 days
    listed = ok(await client.get(f"/api/v1/get_tickets/{sub}/duetoday", headers=me))["data"]
    today = datetime.now(UTC).date()  # the test server's zone is UTC
    all_rows = {
        i["Ticket"]["id"]: i["Ticket"]
        for i in ok(await client.get(f"/api/v1/get_tickets/{sub}", headers=me))["data"]
    }
    urgent_due = datetime.strptime(all_rows[str(urgent)]["due"], "%Y-%m-%d %H:%M:%S").date()
    ids = {i["Ticket"]["id"] for i in listed}
    assert (str(urgent) in ids) == (urgent_due == today)
    assert str(low) not in ids
    assert all_rows[str(urgent)]["priority"] == "urgent"


async def test_v2_post_with_from_and_to_dates(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    n = await raise_for(client, agent(auth), sub)
    now = datetime.now(UTC)
    fmt = "%d-%m-%Y %H:%M"
    around = {
        "fromDate": (now - timedelta(hours=1)).strftime(fmt),
        "toDate": (now + timedelta(hours=1)).strftime(fmt),
    }
    before = {"fromDate": "01-01-2016 0:0", "toDate": "21-11-2016 17:01"}
    got = ok(await client.post(f"/api/v1/get_tickets/{sub}", data=around, headers=me))["data"]
    assert [i["Ticket"]["id"] for i in got] == [str(n)]
    assert (
        ok(await client.post(f"/api/v1/get_tickets/{sub}/unresolved", json=before, headers=me))[
            "data"
        ]
        == []
    )
    assert_error(
        await client.post(
            f"/api/v1/get_tickets/{sub}", data={"fromDate": "2016-11-21"}, headers=me
        ),
        400,
    )


async def test_v2_dates_at_the_end_of_the_calendar_are_400_not_500(
    auth: Auth, start_live_server: Callable[..., Awaitable[Any]]
) -> None:
    # west of UTC, the last minute of year 9999 lies past the calendar's end in UTC
    server = await start_live_server(timezone="America/New_York", project=False)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        sub, me = customer(auth)
        for name in ("fromDate", "toDate"):
            r = await c.post(
                f"/api/v1/get_tickets/{sub}", data={name: "31-12-9999 23:59"}, headers=me
            )
            assert name in assert_error(r, 400)


async def test_v2_user_zero_is_for_staff_only(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    assert "agents" in assert_error(await client.get("/api/v1/get_tickets/0", headers=me), 403)
    assert_error(await client.get("/api/v1/get_tickets/7777777/open", headers=me), 403)
    assert_error(await client.get(f"/api/v1/get_tickets/{sub}/sleeping", headers=me), 400)


# --- V3, V4 ------------------------------------------------------------------------------


async def test_v3_messages_v4_details_and_internal_notes(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    body = ok(
        await client.post(
            "/api/v1/send_message",
            data={
                "ticketId": n,
                "ticketMessage": "connection timeout again",
                "sender": "user",
                "sender_name": "max",
                "showToUser": "true",
            },
            headers=me,
        )
    )
    assert body["message"] == "The message has been sent to the user"
    ok(
        await client.post(
            "/api/v1/send_message",
            json={
                "ticketId": str(n),
                "ticketMessage": "ok. Looking on it",
                "sender": "admin",
                "sender_name": "admin@isp.example",
                "showToUser": "true",
            },
            headers=staff,
        )
    )
    ok(
        await client.post(
            "/api/v1/send_message",
            data={
                "ticketId": n,
                "ticketMessage": "customer is on the old plan",
                "sender": "admin",
                "sender_name": "admin@isp.example",
                "showToUser": "false",
            },
            headers=staff,
        )
    )

    seen_by_staff = await details(client, n, staff)
    conv = seen_by_staff["ticket_conversation"]
    # it opens with the issue as raised (V1's comments), as the seed's sample does
    assert [(c["sender"], c["ticket_message"], c["show_to_user"]) for c in conv] == [
        ("user", "connection timeout", "1"),
        ("user", "connection timeout again", "1"),
        ("admin", "ok. Looking on it", "1"),
        ("admin", "customer is on the old plan", "0"),
    ]
    assert conv[0]["message_id"] is None and conv[0]["sender_name"] == sub
    assert all(c["message_id"].isdigit() for c in conv[1:])
    assert conv[1]["sender_name"] == "max"
    assert conv[2]["sender_name"] == "admin@isp.example"
    assert all(LOCAL_TIME.match(c["created"]) for c in conv)
    td = seen_by_staff["ticket_details"]
    assert (
        td["status"] == "open" and td["assigned_to"] == "NULL" and LOCAL_TIME.match(td["created"])
    )

    seen_by_customer = await details(client, n, me)
    assert [c["ticket_message"] for c in seen_by_customer["ticket_conversation"]] == [
        "connection timeout",
        "connection timeout again",
        "ok. Looking on it",
    ]


async def test_v3_an_agent_relays_the_users_reply(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    ok(
        await client.post(
            "/api/v1/send_message",
            data={
                "ticketId": n,
                "ticketMessage": "sent from the portal",
                "sender": "user",
                "sender_name": "max",
                "showToUser": "true",
            },
            headers=staff,
        )
    )
    native = (await client.get(f"/v1/tickets/{n}", headers=me)).json()
    assert native["messages"][0]["author"]["id"] == sub


@pytest.mark.parametrize(
    ("who", "fields", "status"),
    [
        ("customer", {"showToUser": "false"}, 403),
        ("customer", {"sender": "admin"}, 403),
        ("agent", {"sender": "robot"}, 400),
        ("agent", {"ticketMessage": ""}, 400),
        ("agent", {"ticketId": "x"}, 400),
        ("agent", {"ticketId": "987654321"}, 404),
        ("stranger", {}, 403),
    ],
)
async def test_v3_errors(
    client: httpx.AsyncClient, auth: Auth, who: str, fields: dict[str, str], status: int
) -> None:
    sub, me = customer(auth)
    n = await raise_for(client, agent(auth), sub)
    headers = {"customer": me, "agent": agent(auth), "stranger": customer(auth)[1]}[who]
    form = {
        "ticketId": str(n),
        "ticketMessage": "hello",
        "sender": "user",
        "sender_name": "max",
        "showToUser": "true",
        **fields,
    }
    assert_error(await client.post("/api/v1/send_message", data=form, headers=headers), status)


async def test_v4_errors(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    n = await raise_for(client, agent(auth), sub)
    assert_error(await client.get("/api/v1/get_ticket_details/987654321", headers=me), 404)
    assert_error(
        await client.get(f"/api/v1/get_ticket_details/{n}", headers=customer(auth)[1]), 403
    )
    assert_error(await client.get(f"/api/v1/get_ticket_details/{n}"), 401)


# --- V5 - V8 -----------------------------------------------------------------------------


async def test_v5_close_by_get_as_documented_and_by_post(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    a = await raise_for(client, staff, sub)
    b = await raise_for(client, staff, sub)
    body = ok(await client.get(f"/api/v1/close_ticket/{a}", headers=me))
    assert body["message"] == "The ticket has been closed"
    ok(await client.post(f"/api/v1/close_ticket/{b}", data={"resolution": "fixed"}, headers=staff))
    assert (await details(client, a, me))["ticket_details"]["status"] == "closed"
    assert (await details(client, b, me))["ticket_details"]["status"] == "closed"
    assert_error(await client.get(f"/api/v1/close_ticket/{a}", headers=me), 409)
    assert_error(await client.get("/api/v1/close_ticket/987654321", headers=me), 404)
    assert_error(await client.get(f"/api/v1/close_ticket/{b}"), 401)


async def test_v6_assign_answers_success(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    body = ok(
        await client.post(
            "/api/v1/assign_ticket_to_admin",
            data={"ticketId": n, "admin": "admin@isp.example"},
            headers=staff,
        )
    )
    assert body["message"] == "Admin assigned to the ticket successfully"
    assert (await details(client, n, me))["ticket_details"]["assigned_to"] == "admin@isp.example"
    assert_error(
        await client.post(
            "/api/v1/assign_ticket_to_admin", data={"ticketId": n, "admin": "me"}, headers=me
        ),
        403,
    )
    assert_error(
        await client.post("/api/v1/assign_ticket_to_admin", data={"ticketId": n}, headers=staff),
        400,
    )
    assert_error(
        await client.post(
            "/api/v1/assign_ticket_to_admin",
            data={"ticketId": 987654321, "admin": "a"},
            headers=staff,
        ),
        404,
    )


async def test_v7_reopen_and_v8_rating(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    assert_error(
        await client.post(
            "/api/v1/ticket_rating",
            data={"ticketId": n, "userId": sub, "ratingValue": "4"},
            headers=me,
        ),
        409,
    )
    assert_error(
        await client.post(
            "/api/v1/reopen_ticket",
            data={"ticketId": n, "userId": sub, "comments": "again"},
            headers=me,
        ),
        409,
    )
    ok(await client.get(f"/api/v1/close_ticket/{n}", headers=staff))

    body = ok(
        await client.post(
            "/api/v1/reopen_ticket",
            json={"ticketId": n, "userId": sub, "comments": "still broken"},
            headers=me,
        )
    )
    assert body["message"] == "Ticket has been reopened successfully"
    assert (await details(client, n, me))["ticket_details"]["status"] == "open"
    ok(await client.get(f"/api/v1/close_ticket/{n}", headers=staff))

    body = ok(
        await client.post(
            "/api/v1/ticket_rating",
            data={"ticketId": n, "userId": sub, "ratingValue": "4"},
            headers=me,
        )
    )
    assert (
        body["message"]
        == f"Thanks for your feedback, your rating has been saved for the ticket ID{n}"
    )
    assert (await details(client, n, me))["ticket_details"]["rating"] == 4

    for bad in ("0", "6", "five", ""):
        assert_error(
            await client.post(
                "/api/v1/ticket_rating",
                data={"ticketId": n, "userId": sub, "ratingValue": bad},
                headers=me,
            ),
            400,
        )
    assert_error(
        await client.post(
            "/api/v1/ticket_rating",
            data={"ticketId": n, "userId": sub, "ratingValue": "5"},
            headers=staff,
        ),
        403,
    )
    assert_error(
        await client.post(
            "/api/v1/ticket_rating",
            data={"ticketId": n, "userId": "1", "ratingValue": "5"},
            headers=me,
        ),
        403,
    )
    assert_error(
        await client.post("/api/v1/reopen_ticket", data={"ticketId": n, "userId": sub}, headers=me),
        400,
    )
    assert_error(
        await client.post(
            "/api/v1/reopen_ticket",
            data={"ticketId": n, "userId": sub, "comments": "x"},
            headers=customer(auth)[1],
        ),
        403,
    )
    assert_error(
        await client.post(
            "/api/v1/reopen_ticket",
            data={"ticketId": 987654321, "userId": sub, "comments": "x"},
            headers=staff,
        ),
        404,
    )


# --- seed-mandatory fields (V3, V7, V8) ------------------------------------------------------

SEND = {
    "ticketMessage": "connection timeout again",
    "sender": "user",
    "sender_name": "max",
    "showToUser": "true",
}


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
@pytest.mark.parametrize("blank", [False, True], ids=["missing", "blank"])
@pytest.mark.parametrize(
    "field", ["ticketId", "ticketMessage", "sender", "sender_name", "showToUser"]
)
async def test_v3_every_seed_mandatory_field_is_required(
    client: httpx.AsyncClient,
    auth: Auth,
    event_count: Count,
    field: str,
    blank: bool,
    as_json: bool,
) -> None:
    """Seed V3 marks all five fields Mandatory: a request missing one is refused in the
    dialect's envelope, names the field, and appends nothing."""
    sub, me = customer(auth)
    n = await raise_for(client, agent(auth), sub)
    form: dict[str, Any] = {"ticketId": n if as_json else str(n), **SEND}
    if blank:
        form[field] = "  "
    else:
        del form[field]
    before = await event_count()
    r = await client.post(
        "/api/v1/send_message", **({"json": form} if as_json else {"data": form}), headers=me
    )
    message = assert_error(r, 400)
    assert message.startswith(f"{field} "), message
    assert set(r.json()) == {"status", "errorCode", "message"}
    assert await event_count() == before
    assert len((await details(client, n, me))["ticket_conversation"]) == 1  # the issue only


@pytest.mark.parametrize("value", ["7", "maybe", "yes", "-1"])
async def test_v3_show_to_user_is_the_seeds_true_or_false(
    client: httpx.AsyncClient, auth: Auth, event_count: Count, value: str
) -> None:
    sub, _ = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    form = {"ticketId": str(n), **SEND, "sender": "admin", "showToUser": value}
    before = await event_count()
    message = assert_error(await client.post("/api/v1/send_message", data=form, headers=staff), 400)
    assert message.startswith("showToUser must be 'true' or 'false'"), message
    assert await event_count() == before
    # the keywords themselves, any case, JSON booleans and 1/0 are understood
    for show, note in (("TRUE", "1"), ("False", "0"), (True, "1"), (0, "0")):
        body = {"ticketId": n, **SEND, "sender": "admin", "showToUser": show}
        ok(await client.post("/api/v1/send_message", json=body, headers=staff))
        last = (await details(client, n, staff))["ticket_conversation"][-1]
        assert last["show_to_user"] == note, (show, last)


@pytest.mark.parametrize("blank", [False, True], ids=["missing", "blank"])
@pytest.mark.parametrize(
    ("path", "fields", "who"),
    [
        ("/api/v1/reopen_ticket", {"comments": "still broken"}, "customer"),
        ("/api/v1/reopen_ticket", {"comments": "still broken"}, "agent"),
        ("/api/v1/ticket_rating", {"ratingValue": "4"}, "customer"),  # requester only
    ],
    ids=["reopen-customer", "reopen-agent", "rating-customer"],
)
async def test_v7_v8_user_id_is_mandatory(
    client: httpx.AsyncClient,
    auth: Auth,
    event_count: Count,
    path: str,
    fields: dict[str, str],
    who: str,
    blank: bool,
) -> None:
    """Seed V7 and V8 mark userId Mandatory: without it the command is refused (400, in
    the dialect's envelope) even on a closed ticket where it would otherwise succeed."""
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    ok(await client.get(f"/api/v1/close_ticket/{n}", headers=staff))
    headers = me if who == "customer" else staff
    form = {"ticketId": str(n), **fields, **({"userId": ""} if blank else {})}
    before = await event_count()
    r = await client.post(path, data=form, headers=headers)
    assert assert_error(r, 400) == "userId is required"
    assert set(r.json()) == {"status", "errorCode", "message"}
    assert await event_count() == before
    # the same request with userId goes through
    ok(await client.post(path, data={**form, "userId": sub}, headers=headers))


async def test_v8_rating_value_may_be_a_json_number(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    sub, me = customer(auth)
    staff = agent(auth)
    n = await raise_for(client, staff, sub)
    ok(await client.get(f"/api/v1/close_ticket/{n}", headers=staff))
    before = await event_count()
    for bad in (True, 4.5, [4], "4.0"):
        body = {"ticketId": n, "userId": int(sub), "ratingValue": bad}
        r = await client.post("/api/v1/ticket_rating", json=body, headers=me)
        assert assert_error(r, 400).startswith("ratingValue "), bad
    assert await event_count() == before
    for value, stored in ((3, 3), (4.0, 4), ("5", 5)):
        body = {"ticketId": n, "userId": int(sub), "ratingValue": value}
        ok(await client.post("/api/v1/ticket_rating", json=body, headers=me))
        assert (await details(client, n, me))["ticket_details"]["rating"] == stored


async def test_v1_blank_mandatory_fields_name_the_dialects_field(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    sub, _ = customer(auth)
    staff = agent(auth)
    form = {"type": "General", "subject": "s", "userId": sub, "comments": "c"}
    before = await event_count()
    for field in ("type", "subject", "userId", "comments"):
        r = await client.post("/api/v1/raise_ticket", data={**form, field: " "}, headers=staff)
        assert assert_error(r, 400) == f"{field} is required"
    assert await event_count() == before


async def test_v1_close_immediately_is_the_seeds_true_or_false(
    client: httpx.AsyncClient, auth: Auth, event_count: Count
) -> None:
    sub, me = customer(auth)
    form = {
        "type": "General",
        "subject": "s",
        "userId": sub,
        "comments": "c",
        "resolutionType": "Solved on call",
        "resolutionSubject": "Reset the modem",
    }
    before = await event_count()
    for value in ("7", "yes", "maybe"):
        r = await client.post(
            "/api/v1/raise_ticket", data={**form, "closeTicketImmediately": value}, headers=me
        )
        assert assert_error(r, 400).startswith("closeTicketImmediately must be"), value
    assert await event_count() == before
    for value, status in (("True", "closed"), ("false", "open"), ("", "open")):
        n = int(
            ok(
                await client.post(
                    "/api/v1/raise_ticket",
                    data={**form, "closeTicketImmediately": value},
                    headers=me,
                )
            )["ticketId"]
        )
        assert (await details(client, n, me))["ticket_details"]["status"] == status, value


async def test_openapi_marks_the_seeds_mandatory_fields_required(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]

    def required(path: str) -> set[str]:
        body = paths[path]["post"]["requestBody"]["content"]
        assert body["application/json"] == body["application/x-www-form-urlencoded"]
        return set(body["application/json"]["schema"]["required"])

    assert required("/api/v1/send_message") == {
        "ticketId",
        "ticketMessage",
        "sender",
        "sender_name",
        "showToUser",
    }
    assert required("/api/v1/reopen_ticket") == {"ticketId", "userId", "comments"}
    assert required("/api/v1/ticket_rating") == {"ticketId", "userId", "ratingValue"}
    assert required("/api/v1/raise_ticket") == {"type", "subject", "userId", "comments"}
    assert required("/api/v1/assign_ticket_to_admin") == {"ticketId", "admin"}


async def test_multipart_bodies_work(client: httpx.AsyncClient, auth: Auth) -> None:
    sub, me = customer(auth)
    r = await client.post(
        "/api/v1/raise_ticket",
        files={
            "type": (None, "General"),
            "subject": (None, "Multipart"),
            "userId": (None, sub),
            "comments": (None, "via multipart"),
        },
        headers=me,
    )
    n = int(ok(r)["ticketId"])
    assert (await details(client, n, me))["ticket_details"]["subject"] == "Multipart"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/raise_ticket"),
        ("GET", "/api/v1/get_tickets/0"),
        ("POST", "/api/v1/get_tickets/0/open"),
        ("POST", "/api/v1/send_message"),
        ("POST", "/api/v1/assign_ticket_to_admin"),
        ("POST", "/api/v1/reopen_ticket"),
        ("POST", "/api/v1/ticket_rating"),
    ],
)
async def test_without_credentials_every_operation_is_401(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_error(await client.request(method, path, data={"ticketId": "1"}), 401)


async def test_invalid_json_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    r = await client.post(
        "/api/v1/send_message",
        content=b"{oops",
        headers={**customer(auth)[1], "Content-Type": "application/json"},
    )
    assert_error(r, 400)
