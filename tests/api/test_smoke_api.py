"""The live server answers, stamps request ids, and demands credentials."""

from __future__ import annotations

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
