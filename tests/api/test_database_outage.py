"""While PostgreSQL cannot be reached the API answers 503 with Retry-After (in each
dialect's envelope), acknowledges nothing, and recovers by itself once it can again."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import msgspec

Auth = Callable[..., dict[str, str]]


async def _refuse_connections(admin_dsn: str, database: str, refuse: bool) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        allow = "false" if refuse else "true"
        await conn.execute(f"ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {allow}")
        if refuse:  # and drop the server's pooled connections (waits until they are gone)
            await conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
    finally:
        await conn.close()


async def test_503_while_the_database_is_unreachable_then_recovers(
    start_live_server: Callable[..., Awaitable[Any]], servers: Any, auth: Auth
) -> None:
    server = await start_live_server(project=False)
    database = urlsplit(server.settings.database_url).path.lstrip("/")
    customer = auth("outage-cust", "customer")
    agent = auth("outage-agent", "agent")
    raise_body = {"subject": "Printer", "description": "on fire", "category_id": 1}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        r = await client.post("/v1/tickets", json=raise_body, headers=customer)
        assert r.status_code == 201, r.text
        tid = r.json()["id"]

        await _refuse_connections(servers.admin_dsn, database, True)
        try:
            answers = [
                await client.post("/v1/tickets", json=raise_body, headers=customer),
                await client.post(
                    f"/v1/tickets/{tid}/messages", json={"body": "hello"}, headers=agent
                ),
                await client.get(f"/v1/tickets/{tid}", headers=agent),
            ]
            for r in answers:
                assert r.status_code == 503, (r.request.url, r.status_code, r.text)
                assert r.headers["retry-after"] == "1"
                problem = msgspec.json.decode(r.content)
                assert problem["code"] == "unavailable"
                assert "database is unavailable" in problem["detail"]
            r = await client.post(
                f"/support/tickets/ticket_{tid}/messages", json={"message": "hi"}, headers=agent
            )
            assert r.status_code == 503, r.text
            body = r.json()
            assert (body["success"], body["statusCode"]) == (False, 503)
            assert "database is unavailable" in body["error"]["message"]
        finally:
            await _refuse_connections(servers.admin_dsn, database, False)

        # the pool reconnects by itself: no restart needed
        r = await client.post(f"/v1/tickets/{tid}/messages", json={"body": "back"}, headers=agent)
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 2  # nothing the 503s answered was stored

    conn = await asyncpg.connect(server.settings.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
    finally:
        await conn.close()
