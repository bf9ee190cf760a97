"""The five published ticket APIs, one module each; ROUTERS is what the app mounts."""

from __future__ import annotations

from litestar import Router

ROUTERS: list[Router] = []
