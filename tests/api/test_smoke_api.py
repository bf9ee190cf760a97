"""The live server answers, stamps request ids, and demands credentials."""

from __future__ import annotations

from collections.abc import Callable

import httpx


async def test_health_live_needs_no_credentials(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


async def test_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"


async def test_metrics_without_token_is_401_problem(client: httpx.AsyncClient) -> None:
    r = await client.get("/metrics")
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Bearer" in r.headers["www-authenticate"]
    assert r.headers["x-request-id"]


async def test_options_lists_every_method_of_the_path(
    client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    # Litestar 2's own OPTIONS answer named only the first handler of a path
    admin = auth("admin-1", "admin")
    for path, methods in (
        ("/support/tickets", {"GET", "POST", "OPTIONS"}),
        ("/v1/categories", {"GET", "POST", "OPTIONS"}),
        ("/backend/api/support-ticket/1", {"GET", "POST", "PUT", "OPTIONS"}),
        ("/v1/tickets/1/messages", {"POST", "OPTIONS"}),
    ):
        r = await client.options(path, headers=admin)
        assert r.status_code in (200, 204), (path, r.text)
        assert {m.strip() for m in r.headers["allow"].split(",")} == methods, path
