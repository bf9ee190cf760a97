"""One ticket through every dialect: each view shows the same ticket, messages and status.

Raised in helpdesk_v1, messaged via tickets_message, customer_response (HTTP Basic) and
support, assigned and moved via backend, closed via support, rated via helpdesk_v1.
Internal notes never reach the customer in any dialect. The OpenAPI document lists
every dialect route.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

Auth = Callable[..., dict[str, str]]
BasicUser = Callable[..., Awaitable[tuple[str, str]]]

NOTE = "internal: customer is on the legacy plan"


def ok_status(r: httpx.Response) -> Any:
    assert r.status_code == 200, r.text
    return r.json()


async def views(
    client: httpx.AsyncClient, n: int, headers: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each dialect's details view, reduced to (id, status, [(message id, body)])."""
    support = ok_status(await client.get(f"/support/tickets/ticket_{n}", headers=headers))["data"]
    helpdesk = ok_status(await client.get(f"/api/v1/get_ticket_details/{n}", headers=headers))[
        "message"
    ]
    backend = ok_status(await client.get(f"/backend/api/support-ticket/{n}", headers=headers))[
        "data"
    ]
    native = ok_status(await client.get(f"/v1/tickets/{n}", headers=headers))
    return {
        "support": {
            "id": int(support["ticketId"].removeprefix("ticket_")),
            "status": {"Closed": "closed"}.get(support["status"], support["status"]),
            "assignee": support["assignedAgent"],
            "messages": [
                (int(m["messageId"].removeprefix("msg_")), m["content"])
                for m in support["messages"]
            ],
        },
        "helpdesk_v1": {
            "id": int(helpdesk["ticket_details"]["ticket_id"]),
            "status": helpdesk["ticket_details"]["status"],
            "assignee": helpdesk["ticket_details"]["assigned_to"],
            "messages": [
                (int(m["message_id"]), m["ticket_message"])
                for m in helpdesk["ticket_conversation"][1:]  # [0]: the issue as raised
            ],
        },
        "backend": {
            "id": backend["id"],
            "status": backend["status"],
            "assignee": backend["assignee"],
            "messages": [(m["id"], m["message"]) for m in backend["ticketMessage"]],
        },
        "native": {
            "id": native["id"],
            "status": native["status"],
            "assignee": native["assignee"],
            "messages": [(m["id"], m["body"]) for m in native["messages"]],
        },
    }


async def test_one_ticket_through_every_dialect(
    client: httpx.AsyncClient, auth: Auth, basic_user: BasicUser
) -> None:
    sub = str(uuid.uuid4().int % 10**9)
    cust = auth(sub, "customer", "max")
    agent = auth("agent-7", "agent", "Agnes Agent")
    integration = await basic_user("agent")

    # raise in helpdesk_v1 on the customer's behalf
    raised = ok_status(
        await client.post(
            "/api/v1/raise_ticket",
            data={
                "type": "Technical",
                "subject": "Connection drops",
                "priority": "high",
                "userId": sub,
                "comments": "connection timeout every evening",
            },
            headers=agent,
        )
    )
    n = int(raised["ticketId"])

    # messages: tickets_message (customer), customer_response (integration, HTTP Basic),
    # support (agent), and an internal note via helpdesk_v1
    m1 = ok_status(
        await client.post(
            "/api/tickets/message", json={"ticketId": str(n), "text": "Any update?"}, headers=cust
        )
    )
    r = await client.post(
        f"/api/tickets/{n}/customer_response",
        json={"body": "<p>It dropped again</p>"},
        auth=integration,
    )
    assert (r.status_code, r.content) == (200, b"")
    m3 = ok_status(
        await client.post(
            f"/support/tickets/ticket_{n}/messages", json={"message": "We are on it"}, headers=agent
        )
    )["data"]
    m4 = ok_status(
        await client.post(
            "/api/v1/send_message",
            data={
                "ticketId": n,
                "ticketMessage": NOTE,
                "sender": "admin",
                "sender_name": "agent-7",
                "showToUser": "false",
            },
            headers=agent,
        )
    )

    # assign and change status via backend
    moved = ok_status(
        await client.put(
            f"/backend/api/support-ticket/{n}",
            json={"assignee": "agent-7", "status": 2},
            headers=agent,
        )
    )
    assert moved["data"] == {"id": n, "status": 2, "assignee": "agent-7"}

    # close via support, rate via helpdesk_v1
    closed = ok_status(
        await client.post(
            f"/support/tickets/ticket_{n}/close",
            json={"resolution": "Replaced the modem"},
            headers=agent,
        )
    )
    assert closed["data"]["status"] == "Closed"
    rated = ok_status(
        await client.post(
            "/api/v1/ticket_rating",
            data={"ticketId": n, "userId": sub, "ratingValue": "5"},
            headers=cust,
        )
    )
    assert rated["status"] == "success"

    public = [
        (int(m1["commentId"]), "Any update?"),
        # customer_response's body is HTML (sanitised, kept as such)
        (None, "<p>It dropped again</p>"),
        (int(m3["messageId"].removeprefix("msg_")), "We are on it"),
    ]
    staff_views = await views(client, n, agent)
    native_msgs = staff_views["native"]["messages"]
    public[1] = (native_msgs[1][0], public[1][1])
    expected_staff = [*public, (int(m4["messageId"]), NOTE)]
    for name, v in staff_views.items():
        assert v == {
            "id": n,
            "status": "closed",
            "assignee": "agent-7",
            "messages": expected_staff,
        }, name

    customer_views = await views(client, n, cust)
    for name, v in customer_views.items():
        assert v == {"id": n, "status": "closed", "assignee": "agent-7", "messages": public}, name
        assert NOTE not in str(v)

    # who wrote what is the same everywhere: the requester wrote the first two
    native = ok_status(await client.get(f"/v1/tickets/{n}", headers=cust))
    assert [m["author"]["id"] for m in native["messages"]] == [sub, sub, "agent-7"]
    assert native["rating"] == 5 and native["priority"] == "high"
    assert native["requester"]["id"] == sub
    helpdesk = ok_status(await client.get(f"/api/v1/get_ticket_details/{n}", headers=cust))[
        "message"
    ]
    assert helpdesk["ticket_details"]["rating"] == 5
    conversation = helpdesk["ticket_conversation"][1:]  # [0]: the issue as raised
    assert [c["sender"] for c in conversation] == ["user", "user", "admin"]

    # the lists agree too (served from projections after the read-your-writes wait)
    support_list = ok_status(await client.get("/support/tickets", headers=cust))["data"]
    assert [(t["ticketId"], t["status"], t["priority"]) for t in support_list] == [
        (f"ticket_{n}", "Closed", "High")
    ]
    hd_list = ok_status(await client.get(f"/api/v1/get_tickets/{sub}/closed", headers=cust))["data"]
    assert [
        (t["Ticket"]["id"], t["Ticket"]["status"], t["Ticket"]["assigned_to"]) for t in hd_list
    ] == [(str(n), "closed", "agent-7")]
    be_list = ok_status(await client.get("/backend/api/support-ticket", headers=cust))["data"]
    assert [(t["id"], t["status"]) for t in be_list] == [(n, "closed")]

    # and the log recorded which dialect carried each command
    logs = ok_status(
        await client.get(
            "/backend/api/support-ticket/ticket-logs",
            params={"ticketId": n, "limit": 100},
            headers=agent,
        )
    )["data"]
    assert len(logs) >= 8  # raised, 4 messages, assigned, status, closed, rated


async def test_internal_notes_never_reach_a_customer_in_any_dialect(
    client: httpx.AsyncClient, auth: Auth
) -> None:
    sub = str(uuid.uuid4().int % 10**9)
    cust = auth(sub, "customer", "max")
    agent = auth("agent-8", "agent")
    n = int(
        ok_status(
            await client.post(
                "/api/v1/raise_ticket",
                data={"type": "General", "subject": "Hello", "userId": sub, "comments": "hi"},
                headers=agent,
            )
        )["ticketId"]
    )
    secret = f"secret-{uuid.uuid4().hex}"
    r = await client.post(
        f"/v1/tickets/{n}/messages", json={"body": secret, "visibility": "internal"}, headers=agent
    )
    assert r.status_code in (200, 201), r.text
    ok_status(
        await client.post(
            "/api/v1/send_message",
            data={
                "ticketId": n,
                "ticketMessage": secret + "-2",
                "sender": "admin",
                "sender_name": "a",
                "showToUser": "false",
            },
            headers=agent,
        )
    )
    for path in (
        f"/support/tickets/ticket_{n}",
        f"/api/v1/get_ticket_details/{n}",
        f"/backend/api/support-ticket/{n}",
        f"/v1/tickets/{n}",
        "/support/tickets",
        f"/api/v1/get_tickets/{sub}",
        "/backend/api/support-ticket",
    ):
        r = await client.get(path, headers=cust)
        assert r.status_code == 200, (path, r.text)
        assert secret not in r.text, path
    r = await client.get(
        "/backend/api/support-ticket/ticket-logs", params={"ticketId": n}, headers=cust
    )
    assert r.status_code == 200 and secret not in r.text
    # and staff do see both notes
    r = await client.get(f"/backend/api/support-ticket/{n}", headers=agent)
    assert r.text.count(secret) == 2


DIALECT_ROUTES = {
    "/api/tickets/message": {"post"},
    "/api/tickets/{id}/customer_response": {"post"},
    "/support/tickets": {"get", "post"},
    "/support/tickets/{ticketId}": {"get"},
    "/support/tickets/{ticketId}/messages": {"post"},
    "/support/tickets/{ticketId}/close": {"post"},
    "/support/categories": {"get"},
    "/api/v1/raise_ticket": {"post"},
    "/api/v1/get_tickets/{userId}": {"get", "post"},
    "/api/v1/get_tickets/{userId}/{status}": {"get", "post"},
    "/api/v1/get_tickets/{userId}/{status}/{assigned_admin}": {"get", "post"},
    "/api/v1/send_message": {"post"},
    "/api/v1/get_ticket_details/{ticketId}": {"get"},
    "/api/v1/close_ticket/{ticketId}": {"get", "post"},
    "/api/v1/assign_ticket_to_admin": {"post"},
    "/api/v1/reopen_ticket": {"post"},
    "/api/v1/ticket_rating": {"post"},
    "/backend/api/support-ticket": {"get"},
    "/backend/api/support-ticket/{id}": {"get", "post", "put"},
    "/backend/api/support-ticket/ticket-logs": {"get"},
}


async def test_the_openapi_document_lists_every_dialect_route(client: httpx.AsyncClient) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200, r.text
    paths = r.json()["paths"]
    for path, methods in DIALECT_ROUTES.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for method in methods:
            op = paths[path][method]
            assert op.get("summary"), (path, method)
            assert op.get("tags"), (path, method)


ERROR_SCHEMAS = {
    "/api/tickets/message": "tickets_message_ErrorBody",
    "/api/tickets/{id}/customer_response": "customer_response_ErrorBody",
    "/support/": "support_ErrorEnvelope",
    "/api/v1/": "ErrorReply",
    "/backend/": "backend_ErrorEnvelope",
}


async def test_the_openapi_document_gives_each_dialects_error_envelope_and_bodies(
    client: httpx.AsyncClient,
) -> None:
    doc = (await client.get("/schema/openapi.json")).json()
    paths, schemas = doc["paths"], doc["components"]["schemas"]
    for path, methods in DIALECT_ROUTES.items():
        [name] = [n for prefix, n in ERROR_SCHEMAS.items() if path.startswith(prefix)]
        for method in methods:
            op = paths[path][method]
            errors = {code: r for code, r in op["responses"].items() if code.startswith("4")}
            assert {"400", "401", "403", "404", "429"} <= set(errors), (path, method)
            for code, response in errors.items():
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == f"#/components/schemas/{name}", (path, method, code, ref)
            # a route that reads JSON or form data itself documents both
            if path.startswith(("/api/v1/", "/api/tickets/{id}")) and method == "post":
                content = op["requestBody"]["content"]
                assert {"application/json", "application/x-www-form-urlencoded"} <= set(content)
            if method == "get":
                assert "requestBody" not in op, (path, method)
    assert set(schemas["support_ErrorEnvelope"]["properties"]) == {
        "success",
        "statusCode",
        "data",
        "error",
    }
    assert set(schemas["ErrorReply"]["properties"]) == {"status", "errorCode", "message"}
    reopen = paths["/api/v1/reopen_ticket"]["post"]["requestBody"]["content"]["application/json"]
    assert set(reopen["schema"]["required"]) == {"ticketId", "userId", "comments"}
    # native routes answer bad input 422 problem+json, never the framework's 400
    for path, item in paths.items():
        if path.startswith("/v1/"):
            for method, op in item.items():
                assert "400" not in op["responses"], (path, method)
