"""Request ids, structured JSON logs and per-request metrics, for every response.

The request id is taken from ``X-Request-ID`` (when it looks like an id) or generated,
kept in the ASGI scope and a context variable (so every log line carries it), and
echoed on every response by a ``before_send`` hook, which also sees responses for
unknown routes and errors raised by other middleware.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("ticketing.api.access")

REQUEST_ID_HEADER = "x-request-id"
LAG_HEADER = "x-projection-lag-ms"
_STATE_ID = "ticketing_request_id"
_STATE_T0 = "ticketing_t0"
_STATE_LAG = "ticketing_projection_lag_ms"
_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ticketing_request_id", default=None
)


def _state(scope: Scope | dict[str, Any]) -> dict[str, Any]:
    state = scope.get("state")
    if state is None:
        state = {}
        scope["state"] = state
    return state


def trace_ids_from_scope(scope: Scope | dict[str, Any]) -> tuple[str | None, str | None]:
    """The client's X-Correlation-ID and X-Causation-ID (each None unless sent and sane,
    by the rule for request ids): a client tying this request to a conversation or to
    the message that caused it, recorded in the events' metadata."""
    found: dict[bytes, str | None] = {b"x-correlation-id": None, b"x-causation-id": None}
    for k, v in scope.get("headers", ()):
        if k in found:
            candidate = v.decode("latin-1").strip()
            found[k] = candidate if _SANE_ID.match(candidate) else None
    return found[b"x-correlation-id"], found[b"x-causation-id"]


def request_id_from_scope(scope: Scope | dict[str, Any]) -> str:
    """The request's id: the client's X-Request-ID if it is sane, else a fresh one."""
    state = _state(scope)
    rid = state.get(_STATE_ID)
    if rid is None:
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                candidate = v.decode("latin-1").strip()
                if _SANE_ID.match(candidate):
                    rid = candidate
                break
        if rid is None:
            rid = _new_request_id()
        state[_STATE_ID] = rid
    return str(rid)


class _RequestIds:
    """32 hex digits: 64 random bits per process, then a counter. Unique across processes
    and restarts without a system call per request (``os.urandom`` for each one was 3% of a
    get's CPU); request ids correlate, they authorize nothing, so they need not be secret."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._next = 0

    def __call__(self) -> str:
        if self._pid != os.getpid():  # a forked child must not repeat its parent's ids
            self._pid, self._prefix, self._next = os.getpid(), os.urandom(8).hex(), 0
        self._next += 1
        return f"{self._prefix}{self._next:016x}"


_new_request_id = _RequestIds()


def set_projection_lag(scope: Scope | dict[str, Any], lag_ms: int) -> None:
    _state(scope)[_STATE_LAG] = lag_ms


class RequestMiddleware(ASGIMiddleware):
    """The one per-route middleware: binds the request id to the logging context, then
    runs the access ``guard`` (authentication, rate limit, role policy) unless the path
    is public. One layer instead of two: each ASGI middleware layer costs every request."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self,
        guard: Callable[[Scope], Awaitable[None]] | None = None,
        is_public: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.guard = guard
        self.is_public = is_public or (lambda scope: False)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        _state(scope)[_STATE_T0] = time.perf_counter()
        token = request_id_var.set(request_id_from_scope(scope))
        try:
            if self.guard is not None and not self.is_public(scope):
                await self.guard(scope)
            await next_app(scope, receive, send)
        finally:
            request_id_var.reset(token)


_ALLOW_TABLE = "allow_by_path"  # app.state: each route path's methods, built once


def _allow_every_method(
    headers: list[tuple[bytes, bytes]], scope: Scope, route: str
) -> list[tuple[bytes, bytes]]:
    """OPTIONS answers with every method of the path in Allow (RFC 9110). Litestar 2's own
    OPTIONS handler names only the first handler registered on a path (so GET and POST
    written as two handlers showed one of them); the app's route map has them all."""
    app = scope.get("litestar_app")
    if app is None:
        return headers
    table: dict[str, str] | None = app.state.get(_ALLOW_TABLE)
    if table is None:
        table = {
            r.path_format: ", ".join(sorted(r.methods)) for r in app.routes if hasattr(r, "methods")
        }
        app.state[_ALLOW_TABLE] = table
    allowed = table.get(route)
    if allowed is None:
        return headers
    return [(k, v) for k, v in headers if k.lower() != b"allow"] + [(b"allow", allowed.encode())]


async def before_send(message: Message, scope: Scope) -> None:
    """Stamp X-Request-ID (and the projection lag) on the response; log and measure it."""
    if message["type"] != "http.response.start" or str(scope.get("type")) != "http":
        return
    state = _state(scope)
    rid = request_id_from_scope(scope)
    headers = list(message.get("headers", ()))
    headers.append((b"x-request-id", rid.encode()))
    lag = state.get(_STATE_LAG)
    if lag is not None:
        headers.append((b"x-projection-lag-ms", str(int(lag)).encode()))
    route = scope.get("path_template") or "<unmatched>"
    method = str(scope.get("method", ""))
    if method == "OPTIONS":
        headers = _allow_every_method(headers, scope, route)
    message["headers"] = headers
    status = int(message["status"])
    t0 = state.get(_STATE_T0)
    elapsed = (time.perf_counter() - t0) if t0 is not None else None
    app = scope.get("litestar_app")
    metrics = getattr(getattr(app, "state", None), "metrics", None) if app is not None else None
    if metrics is not None and elapsed is not None:
        metrics.observe_request(method, route, status, elapsed)
    if not log.isEnabledFor(logging.INFO):
        return  # the access log is off (e.g. TICKETING_LOG_LEVEL=WARNING): build nothing
    user = scope.get("user")
    fields: dict[str, Any] = {
        "request_id": rid,
        "method": method,
        "route": route,
        "path": scope.get("path"),  # never the query string: it is not ours to log
        "status": status,
    }
    if elapsed is not None:
        fields["duration_ms"] = round(elapsed * 1000, 2)
    if user is not None:
        fields["actor"] = f"{getattr(user, 'role', '?')}:{getattr(user, 'id', '?')}"
    log.info("request", extra={"fields": fields})


# --- structured logs ---------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line; the request id of the current request on every line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid is not None:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the service's loggers (idempotent)."""
    root = logging.getLogger("ticketing")
    if not any(getattr(h, "_ticketing", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._ticketing = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = True
    root.setLevel(level.upper())
