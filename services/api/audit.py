"""Auditor routes under /v1/audit (filled in by the audit work)."""

from __future__ import annotations

from litestar import Router

router = Router(path="/v1/audit", route_handlers=[])
