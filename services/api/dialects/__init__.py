"""The five published ticket APIs, one module each; ROUTERS is what the app mounts.

Importing a dialect module also registers its error envelope with services.api.errors.
"""

from __future__ import annotations

from litestar import Router

from services.api.dialects import (
    backend,
    customer_response,
    helpdesk_v1,
    support,
    tickets_message,
)

ROUTERS: list[Router] = [
    tickets_message.router,
    customer_response.router,
    support.router,
    helpdesk_v1.router,
    backend.router,
]
