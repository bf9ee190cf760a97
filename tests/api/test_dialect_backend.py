"""Dialect backend (seed 004): /backend/api/support-ticket list, details, messages, status, logs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

Auth = Callable[..., dict[str, str]]
BASE = "/backend/api/support-ticket"


def customer(auth: Auth) -> tuple[str, dict[str, str]]:
    sub = f"user{uuid.uuid4().hex[:8]}"
    return sub, auth(sub, "customer", "User One")


def admin(auth: Auth) -> dict[str, str]:
    return auth("admin", "admin", "Admin")


def ok(r: httpx.Response, message: str) -> Any:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == 1  # the number, as the details example prints it
    assert body["message"] == message
    return body["data"]


def assert_error(r: httpx.Response, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["status"] == 0
    assert body["data"] is None
    assert isinstance(body["message"], str) and body["message"]


async def raise_ticket(
    client: httpx.AsyncClient, headers: dict[str, str], subject: str = "Refund Request"
) -> int:
    r = await client.post(
        "/support/tickets",
        json={
            "subject": subject,
            "description": "Request for a refund on order #XYZ",
            "categoryId": "category_5",
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    return int(r.json()["data"]["ticketId"].removeprefix("ticket_"))


TICKET_FIELDS = {
    "createdBy",
    "createdDate",
    "modifiedBy",
    "modifiedDate",
    "id",
    "refId",
    "userId",
    "userType",
    "categoryId",
    "subCategoryId",
    "subject",
    "description",
    "isActive",
    "isDelete",
    "status",
}


async def test_seed_list_with_limit_offset_keyword_and_count(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    word = f"refund{uuid.uuid4().hex[:6]}"
    a = await raise_ticket(client, me, f"Refund Request {word}")
    b = await raise_ticket(client, me, f"Another {word} question")
    await raise_ticket(client, me, "Unrelated matter")
    data = ok(
        await client.get(
            BASE, params={"limit": 10, "offset": 0, "keyword": word}, headers=admin(auth)
        ),
        "Support tickets retrieved successfully",
    )
    assert [t["id"] for t in data] == [b, a]
    t = data[1]
    assert TICKET_FIELDS <= set(t)
    assert isinstance(t["id"], int) and t["refId"] == f"TICKET{a}"
    assert t["userId"] == sub and t["userType"] == "customer" and t["createdBy"] == sub
    assert t["categoryId"] == 5 and isinstance(t["subCategoryId"], int)
    assert t["subject"] == f"Refund Request {word}"
    assert t["isActive"] is True and t["isDelete"] is False and t["status"] == "open"
    assert t["createdDate"].endswith("Z") and t["modifiedDate"].endswith("Z")
    category = t["ticketCategory"]
    assert category["createdDate"].endswith("Z") and category["modifiedBy"] == "system"
    assert {k: v for k, v in category.items() if k not in ("createdDate", "modifiedDate")} == {
        "createdBy": "system",  # a default category, seeded by migrate
        "modifiedBy": "system",
        "id": 5,
        "categoryName": "Refund",
        "parentCategoryId": 0,
        "isActive": True,
        "isDelete": False,
    }

    page = ok(
        await client.get(
            BASE, params={"limit": 1, "offset": 1, "keyword": word}, headers=admin(auth)
        ),
        "Support tickets retrieved successfully",
    )
    assert [t["id"] for t in page] == [a]
    counted = ok(
        await client.get(BASE, params={"keyword": word, "count": "true"}, headers=admin(auth)),
        "Support tickets counted successfully",
    )
    assert counted == {"count": 2}
    # an empty or blank keyword (an empty search box) filters nothing, like no keyword
    everything = ok(
        await client.get(BASE, params={"count": "true"}, headers=admin(auth)),
        "Support tickets counted successfully",
    )
    for blank in ("", "   "):
        got = await client.get(
            BASE, params={"keyword": blank, "count": "true"}, headers=admin(auth)
        )
        assert ok(got, "Support tickets counted successfully") == everything, blank


async def test_customers_list_only_their_own(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    _, other = customer(auth)
    mine = await raise_ticket(client, me)
    theirs = await raise_ticket(client, other)
    ids = {
        t["id"]
        for t in ok(
            await client.get(BASE, params={"limit": 100}, headers=me),
            "Support tickets retrieved successfully",
        )
    }
    assert mine in ids and theirs not in ids
    assert ok(
        await client.get(BASE, params={"count": "true"}, headers=me),
        "Support tickets counted successfully",
    ) == {"count": 1}


async def test_seed_add_message_with_attachments_then_details(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    n = await raise_ticket(client, me)
    data = ok(
        await client.post(
            f"{BASE}/{n}",
            json={
                "message": "Can you provide an update on my request?",
                "attachments": [
                    {"fileName": "attachment1.pdf", "filePath": "/uploads/attachment1.pdf"}
                ],
            },
            headers=me,
        ),
        "Message and attachments added successfully",
    )
    assert data["ticketId"] == n
    assert data["message"] == "Can you provide an update on my request?"
    assert data["attachments"] == [
        {"fileName": "attachment1.pdf", "filePath": "/uploads/attachment1.pdf"}
    ]

    d = ok(await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully")
    assert TICKET_FIELDS <= set(d)
    assert d["id"] == n and d["userId"] == sub and d["refId"] == f"TICKET{n}"
    [m] = d["ticketMessage"]
    assert m["ticketId"] == n and isinstance(m["id"], int) and m["id"] == data["messageId"]
    assert (
        m["senderId"] == sub and m["senderType"] == "customer" and m["createdByType"] == "customer"
    )
    assert m["message"] == "Can you provide an update on my request?"
    assert m["sentAt"].endswith("Z") and m["isActive"] is True and m["isDelete"] is False
    assert m["ticketAttachments"] == [
        {"fileName": "attachment1.pdf", "filePath": "/uploads/attachment1.pdf"}
    ]
    assert d["ticketAttachments"] == []


async def test_uploaded_files_show_their_names_and_download_paths(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    up = await client.post(
        "/v1/attachments", files={"file": ("report.txt", b"the numbers", "text/plain")}, headers=me
    )
    assert up.status_code == 201, up.text
    file_id = up.json()["id"]
    n = await raise_ticket(client, me)
    r = await client.post(
        f"/v1/tickets/{n}/messages", json={"body": "see file", "attachments": [file_id]}, headers=me
    )
    assert r.status_code == 201, r.text
    d = ok(await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully")
    [m] = d["ticketMessage"]
    assert m["ticketAttachments"] == [
        {
            "fileName": "report.txt",
            "filePath": f"/v1/attachments/{file_id}",
            "attachmentId": file_id,
        }
    ]


async def test_a_message_may_carry_only_attachments(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    data = ok(
        await client.post(
            f"{BASE}/{n}",
            json={"attachments": [{"fileName": "scan.png", "filePath": "/uploads/scan.png"}]},
            headers=me,
        ),
        "Message and attachments added successfully",
    )
    assert "scan.png" in data["message"]
    assert_error(await client.post(f"{BASE}/{n}", json={}, headers=me), 400)
    assert_error(
        await client.post(f"{BASE}/{n}", json={"attachments": [{"fileName": "x"}]}, headers=me), 400
    )


async def test_file_references_obey_the_text_rules_and_a_rejected_one_appends_nothing(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    many = [{"fileName": f"{i}.pdf", "filePath": f"/uploads/{i}.pdf"} for i in range(21)]
    for refs in (
        [{"fileName": "a\u0000.pdf", "filePath": "/uploads/a.pdf"}],
        [{"fileName": "a.pdf", "filePath": "/u\u001b[31m"}],
        [{"fileName": "", "filePath": ""}],
        [{"fileName": "a" * 500_000, "filePath": "/uploads/a.pdf"}],
        many,
    ):
        r = await client.post(f"{BASE}/{n}", json={"message": "x", "attachments": refs}, headers=me)
        assert_error(r, 400)
    log = await client.get(f"/v1/tickets/{n}/log", headers=admin(auth))
    assert [e["action"] for e in log.json()["items"]] == ["TicketRaised"]


@pytest.mark.parametrize(
    ("sent", "code", "name"),
    [
        (1, 1, "open"),
        (2, 2, "in_progress"),
        ("3", 3, "on_hold"),
        ("resolved", 4, "resolved"),
        ("In Progress", 2, "in_progress"),
        (5, 5, "closed"),
    ],
)
async def test_seed_update_status_by_number_or_name(
    client: httpx.AsyncClient, auth: Auth, sent: Any, code: int, name: str
) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    data = ok(
        await client.put(f"{BASE}/{n}", json={"status": sent}, headers=admin(auth)),
        "Ticket status updated successfully",
    )
    assert data == {"id": n, "status": code, "assignee": None}
    assert (
        ok(await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully")[
            "status"
        ]
        == name
    )


async def test_update_status_errors(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    for bad in (
        {"status": 9},
        {"status": "sleeping"},
        {},
        {"status": 0},
        {"status": "\u00b2"},  # a superscript two: was a 500
        {"status": "\u0663"},  # an Arabic-Indic three: was read as 3
    ):
        assert_error(await client.put(f"{BASE}/{n}", json=bad, headers=admin(auth)), 400)
    # assigning and changing the status is one command: a refused status change (its
    # reason too long) leaves no assignment behind
    events = await client.get(f"/v1/audit/tickets/{n}/events", headers=admin(auth))
    before = len(events.json()["items"])
    r = await client.put(
        f"{BASE}/{n}",
        json={"status": 4, "assignee": "agent-8", "reason": "r" * 3000},
        headers=admin(auth),
    )
    assert_error(r, 400)
    assert "reason" in r.json()["message"]
    events = await client.get(f"/v1/audit/tickets/{n}/events", headers=admin(auth))
    assert len(events.json()["items"]) == before
    data = ok(
        await client.put(
            f"{BASE}/{n}",
            json={"status": 3, "assignee": "agent-8", "reason": "waiting"},
            headers={**admin(auth), "Idempotency-Key": f"both-{n}"},
        ),
        "Ticket status updated successfully",
    )
    assert data == {"id": n, "status": 3, "assignee": "agent-8"}
    events = await client.get(f"/v1/audit/tickets/{n}/events", headers=admin(auth))
    got = [e["type"] for e in events.json()["items"]]
    assert got[before:] == ["TicketAssigned", "StatusChanged"]
    assert len({e["recorded_at"] for e in events.json()["items"][before:]}) == 1  # one append
    again = await client.put(
        f"{BASE}/{n}",
        json={"status": 3, "assignee": "agent-8", "reason": "waiting"},
        headers={**admin(auth), "Idempotency-Key": f"both-{n}"},
    )
    assert again.json()["data"] == data
    events = await client.get(f"/v1/audit/tickets/{n}/events", headers=admin(auth))
    assert len(events.json()["items"]) == before + 2  # the repeat appended nothing
    assert_error(await client.put(f"{BASE}/{n}", json={"status": 2}, headers=me), 403)
    assert_error(
        await client.put(f"{BASE}/987654321", json={"status": 2}, headers=admin(auth)), 404
    )
    ok(
        await client.put(f"{BASE}/{n}", json={"status": 5}, headers=admin(auth)),
        "Ticket status updated successfully",
    )
    assert_error(await client.put(f"{BASE}/{n}", json={"status": 1}, headers=admin(auth)), 409)


async def test_the_requester_closes_their_ticket_with_status_5_and_no_other_status(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    # the dialect's only way to close is the status update; close is the requester's too
    _, me = customer(auth)
    _, stranger = customer(auth)
    n = await raise_ticket(client, me)
    assert_error(await client.put(f"{BASE}/{n}", json={"status": 5}, headers=stranger), 403)
    assert_error(await client.put(f"{BASE}/{n}", json={"status": 4}, headers=me), 403)
    data = ok(
        await client.put(f"{BASE}/{n}", json={"status": 5, "reason": "sorted"}, headers=me),
        "Ticket status updated successfully",
    )
    assert data["status"] == 5
    log = await client.get(f"/v1/tickets/{n}/log", headers=admin(auth))
    assert [e["action"] for e in log.json()["items"]] == ["TicketRaised", "TicketClosed"]
    assert_error(await client.put(f"{BASE}/{n}", json={"status": 5}, headers=me), 409)


async def test_seed_ticket_logs_with_limit_offset_and_count(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    n = await raise_ticket(client, me)
    ok(
        await client.put(f"{BASE}/{n}", json={"status": 2}, headers=admin(auth)),
        "Ticket status updated successfully",
    )
    ok(
        await client.post(f"{BASE}/{n}", json={"message": "thanks"}, headers=me),
        "Message and attachments added successfully",
    )
    logs = ok(
        await client.get(f"{BASE}/ticket-logs", params={"limit": 10, "offset": 0}, headers=me),
        "Successfully retrieved ticket logs",
    )
    assert [entry["ticketId"] for entry in logs] == [n, n, n]  # a customer sees only their tickets
    first = logs[0]
    assert {
        "createdBy",
        "createdDate",
        "modifiedBy",
        "modifiedDate",
        "id",
        "ticketId",
        "actionTaken",
        "actionBy",
        "actionByType",
        "actionAt",
        "isActive",
        "isDelete",
        "createdByType",
        "modifiedByType",
    } <= set(first)
    assert (
        isinstance(first["id"], int)
        and isinstance(first["actionTaken"], str)
        and first["actionTaken"]
    )
    assert first["createdBy"] == sub and first["actionByType"] == "customer"
    assert logs[1]["actionByType"] == "admin"
    assert first["id"] < logs[1]["id"] < logs[2]["id"]
    assert ok(
        await client.get(f"{BASE}/ticket-logs", params={"limit": 1, "offset": 2}, headers=me),
        "Successfully retrieved ticket logs",
    ) == [logs[2]]
    for counting in (1, 2, "true"):  # the seed types count as an integer: any but 0 counts
        assert ok(
            await client.get(f"{BASE}/ticket-logs", params={"count": counting}, headers=me),
            "Successfully counted ticket logs",
        ) == {"count": 3}
    # count=0 (the seed's example value) lists rather than counts
    assert (
        len(
            ok(
                await client.get(f"{BASE}/ticket-logs", params={"count": 0}, headers=me),
                "Successfully retrieved ticket logs",
            )
        )
        == 3
    )
    per_ticket = ok(
        await client.get(f"{BASE}/ticket-logs", params={"ticketId": n}, headers=admin(auth)),
        "Successfully retrieved ticket logs",
    )
    assert [e["id"] for e in per_ticket] == [e["id"] for e in logs]


async def test_internal_notes_stay_with_staff(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    r = await client.post(
        f"/v1/tickets/{n}/messages",
        json={"body": "internal only", "visibility": "internal"},
        headers=admin(auth),
    )
    assert r.status_code in (200, 201), r.text
    staff_view = ok(
        await client.get(f"{BASE}/{n}", headers=admin(auth)),
        "Ticket details retrieved successfully",
    )
    assert [m["message"] for m in staff_view["ticketMessage"]] == ["internal only"]
    customer_view = ok(
        await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully"
    )
    assert customer_view["ticketMessage"] == []
    logs = ok(
        await client.get(f"{BASE}/ticket-logs", params={"ticketId": n}, headers=me),
        "Successfully retrieved ticket logs",
    )
    assert all("internal only" not in str(e) for e in logs)


async def test_modified_by_is_the_last_actor_the_reader_may_see_in_list_and_details(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub, me = customer(auth)
    n = await raise_ticket(client, me, f"Modified {uuid.uuid4().hex[:8]}")
    agent = auth("agent-7", "agent", "Agent Seven")
    r = await client.post(f"/v1/tickets/{n}/messages", json={"body": "on it"}, headers=agent)
    assert r.status_code == 201, r.text
    r = await client.post(
        f"/v1/tickets/{n}/messages",
        json={"body": "psst", "visibility": "internal"},
        headers=admin(auth),
    )
    assert r.status_code == 201, r.text

    def listed(rows: list[dict[str, Any]]) -> dict[str, Any]:
        [row] = [t for t in rows if t["id"] == n]
        return row

    staff_list = ok(
        await client.get(BASE, params={"limit": 100}, headers=admin(auth)),
        "Support tickets retrieved successfully",
    )
    staff_details = ok(
        await client.get(f"{BASE}/{n}", headers=admin(auth)),
        "Ticket details retrieved successfully",
    )
    assert listed(staff_list)["modifiedBy"] == staff_details["modifiedBy"] == "admin"
    # the customer is not told who wrote the internal note
    mine = ok(
        await client.get(BASE, params={"limit": 100}, headers=me),
        "Support tickets retrieved successfully",
    )
    details = ok(
        await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully"
    )
    assert listed(mine)["modifiedBy"] == details["modifiedBy"] == "agent-7"
    assert details["createdBy"] == sub


async def test_a_category_created_by_an_admin_shows_its_creator(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    boss = auth("admin-cat", "admin", "Cat Admin")
    name = f"Backend {uuid.uuid4().hex[:8]}"
    r = await client.post("/v1/categories", json={"name": name}, headers=boss)
    assert r.status_code == 201, r.text
    _, me = customer(auth)
    created = await client.post(
        "/support/tickets",
        json={"subject": "s", "description": "d", "categoryId": f"category_{r.json()['id']}"},
        headers=me,
    )
    n = int(created.json()["data"]["ticketId"].removeprefix("ticket_"))
    d = ok(await client.get(f"{BASE}/{n}", headers=me), "Ticket details retrieved successfully")
    assert d["ticketCategory"]["categoryName"] == name
    assert d["ticketCategory"]["createdBy"] == d["ticketCategory"]["modifiedBy"] == "admin-cat"


@pytest.mark.parametrize(
    "query", [{"limit": 0}, {"offset": -1}, {"limit": "ten"}, {"count": "perhaps"}]
)
async def test_bad_list_parameters_are_400(
    client: httpx.AsyncClient, auth: Auth, query: dict[str, Any]
) -> None:
    assert_error(await client.get(BASE, params=query, headers=admin(auth)), 400)
    assert_error(await client.get(f"{BASE}/ticket-logs", params=query, headers=admin(auth)), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", BASE),
        ("GET", f"{BASE}/1"),
        ("POST", f"{BASE}/1"),
        ("PUT", f"{BASE}/1"),
        ("GET", f"{BASE}/ticket-logs"),
    ],
)
async def test_without_a_token_is_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    assert_error(await client.request(method, path, json={"status": 1}), 401)


async def test_unknown_and_foreign_and_malformed_ids(client: httpx.AsyncClient, auth: Auth) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    other = customer(auth)[1]
    assert_error(await client.get(f"{BASE}/987654321", headers=me), 404)
    assert_error(await client.post(f"{BASE}/987654321", json={"message": "x"}, headers=me), 404)
    assert_error(await client.get(f"{BASE}/{n}", headers=other), 403)
    assert_error(await client.post(f"{BASE}/{n}", json={"message": "x"}, headers=other), 403)
    assert_error(await client.get(f"{BASE}/abc", headers=me), 400)


async def test_an_offset_past_the_64_bit_range_is_400_not_500(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    for path in (BASE, f"{BASE}/ticket-logs"):
        for offset in (2**63, 10**30):
            r = await client.get(path, params={"offset": offset}, headers=admin(auth))
            assert_error(r, 400)
            assert "offset" in r.json()["message"]
        r = await client.get(path, params={"offset": 2**63 - 1}, headers=admin(auth))
        assert r.status_code == 200 and r.json()["data"] == [], r.text


@pytest.mark.parametrize(
    ("path", "query"),
    [
        (BASE, "keyword=refund&keyword=other"),
        (BASE, "limit=1&limit=2"),
        (BASE, "count=true&count=false"),
        (f"{BASE}/ticket-logs", "offset=0&offset=5"),
        (f"{BASE}/ticket-logs", "ticketId=1&ticketId=2"),
    ],
)
async def test_a_parameter_given_twice_is_400(
    client: httpx.AsyncClient, auth: Auth, path: str, query: str
) -> None:
    r = await client.get(f"{path}?{query}", headers=admin(auth))
    assert_error(r, 400)
    assert "more than once" in r.json()["message"]


async def test_a_keyword_over_500_characters_is_400(client: httpx.AsyncClient, auth: Auth) -> None:
    r = await client.get(BASE, params={"keyword": "refund " * 100}, headers=admin(auth))
    assert_error(r, 400)
    assert "keyword" in r.json()["message"]


async def test_one_tickets_logs_unknown_is_404_and_another_customers_is_403(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    _, me = customer(auth)
    n = await raise_ticket(client, me)
    other = customer(auth)[1]
    for params in ({"ticketId": n}, {"ticketId": n, "count": 1}):
        assert_error(await client.get(f"{BASE}/ticket-logs", params=params, headers=other), 403)
    for who in (me, admin(auth)):
        r = await client.get(f"{BASE}/ticket-logs", params={"ticketId": 987654321}, headers=who)
        assert_error(r, 404)
    assert ok(
        await client.get(f"{BASE}/ticket-logs", params={"ticketId": n, "count": 1}, headers=me),
        "Successfully counted ticket logs",
    ) == {"count": 1}


async def test_openapi_documents_the_seed_parameter_types(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/schema/openapi.json")).json()

    def params(path: str, method: str = "get") -> dict[str, Any]:
        return {p["name"]: p["schema"] for p in doc["paths"][path][method]["parameters"]}

    listing = params(BASE)
    assert listing["limit"]["type"] == listing["offset"]["type"] == "integer"
    assert listing["keyword"]["type"] == "string"
    assert listing["count"]["type"] == "boolean"
    logs = params(f"{BASE}/ticket-logs")
    assert logs["limit"]["type"] == logs["offset"]["type"] == logs["count"]["type"] == "integer"
    for method in ("get", "post", "put"):
        assert params(f"{BASE}/{{id}}", method)["id"]["type"] == "integer"
