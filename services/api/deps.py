"""What handlers take from the app (``commands_of``, ``pool_of``, ``settings_of``), and the
request → command Context helper."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from litestar import Request
from litestar.utils.scope.state import ScopeState

from domain.errors import InvalidInput
from domain.events import Actor
from services.api.errors import Unauthenticated
from services.api.middleware import (
    request_id_from_scope,
    set_projection_lag,
    trace_ids_from_scope,
)
from services.commands import CommandService, Context, fingerprint
from services.settings import Settings

_ETAG = re.compile(r'^\s*(?:W/)?"(\d{1,10})"\s*$')
IDEMPOTENCY_KEY_MAX = 200


# Handlers read the app's shared objects through these (not Litestar dependencies:
# resolving those costs every request, and several at once spawn an anyio task group).
def commands_of(request: Request[Any, Any, Any]) -> CommandService:
    return request.app.state.commands  # type: ignore[no-any-return]


def pool_of(request: Request[Any, Any, Any]) -> asyncpg.Pool:
    return request.app.state.pool


def settings_of(request: Request[Any, Any, Any]) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def current_actor(request: Request[Any, Any, Any]) -> Actor:
    user = request.scope.get("user")
    if not isinstance(user, Actor):  # only on a route the auth middleware skips
        raise Unauthenticated("authentication required")
    return user


def parse_if_match(value: str | None) -> int | None:
    """``"3"`` or ``W/"3"`` → 3; absent or ``*`` → None; anything else is a client error."""
    if value is None or value.strip() in ("", "*"):
        return None
    m = _ETAG.match(value)
    if m is None:
        raise InvalidInput(
            'If-Match must be an ETag as returned by this API, e.g. "3"', field="If-Match"
        )
    return int(m.group(1))


def request_body(request: Request[Any, Any, Any]) -> bytes:
    """The raw body if it was already read (Litestar caches it in the scope), else b''."""
    body = ScopeState.from_scope(request.scope).body
    return body if isinstance(body, bytes) else b""


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The request's Idempotency-Key header, checked; None when it sent none."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > IDEMPOTENCY_KEY_MAX or not key.isprintable():
        raise InvalidInput(
            f"Idempotency-Key must be 1-{IDEMPOTENCY_KEY_MAX} printable characters",
            field="Idempotency-Key",
        )
    return key


class Idempotency(msgspec.Struct, frozen=True):
    """An Idempotency-Key of a request that creates something other than events."""

    principal: str
    key: str
    request_hash: bytes


def idempotency_of(request: Request[Any, Any, Any], *request_parts: object) -> Idempotency | None:
    """The key and the fingerprint of what was asked (method, path and ``request_parts``:
    the canonical body, or for an upload its file's name and digest)."""
    key = idempotency_key(request)
    if key is None:
        return None
    actor = current_actor(request)
    return Idempotency(
        principal=f"{actor.role}:{actor.id}",
        key=key,
        request_hash=fingerprint(request.method, request.url.path, *request_parts),
    )


def canonical_body(raw: bytes) -> bytes:
    """A JSON body with its keys sorted and no spacing, so a client that re-serialises the
    same request (another key order, other whitespace) still matches its first; any other
    body as it came."""
    if not raw or raw[:1] not in (b"{", b"["):
        return raw
    try:
        return msgspec.json.encode(msgspec.json.decode(raw), order="sorted")
    except (msgspec.DecodeError, msgspec.EncodeError):
        return raw


def command_context(
    request: Request[Any, Any, Any],
    actor: Actor | None = None,
    dialect: str = "native",
    body: bytes | None = None,
) -> Context:
    """The command Context for this request: actor, request id, idempotency, If-Match.

    The idempotency fingerprint covers method, path and the raw body, so the same key
    with a different request is refused. Pass ``body`` if you read it yourself;
    otherwise the body Litestar already parsed is used.
    """
    actor = actor or current_actor(request)
    key = idempotency_key(request)
    raw = body if body is not None else request_body(request)
    correlation_id, causation_id = trace_ids_from_scope(request.scope)
    return Context(
        actor=actor,
        request_id=request_id_from_scope(request.scope),
        correlation_id=correlation_id,
        causation_id=causation_id,
        dialect=dialect,
        idempotency_key=key or None,
        request_fingerprint=(
            fingerprint(request.method, request.url.path, canonical_body(raw)) if key else None
        ),
        expected_version=parse_if_match(request.headers.get("if-match")),
    )


async def consistent(request: Request[Any, Any, Any]) -> int | None:
    """Read-your-writes: wait (bounded) until projections reach the log's head.

    Returns the remaining lag in ms (and stamps ``X-Projection-Lag-Ms`` on the
    response) when the wait ran out; None when the projections are current.
    """
    state = request.app.state
    try:
        from projections.consistency import wait_for_projections
    except ImportError:  # pragma: no cover - projections not installed yet
        return None
    lag = await wait_for_projections(state.pool, state.settings.consistency_wait_ms)
    if lag:
        lag_ms = int(lag)
        set_projection_lag(request.scope, lag_ms)
        return lag_ms
    return None


def one_value_each(request: Request[Any, Any, Any], names: tuple[str, ...]) -> None:
    """``?status=open&status=closed`` would silently use its last value: refuse it (the
    native list and the dialects' lists alike)."""
    seen: set[str] = set()
    for name, _ in request.query_params.multi_items():  # one pass: lists are a hot path
        if name in seen and name in names:
            raise InvalidInput(f"{name} is given more than once; give one value", field=name)
        seen.add(name)


def in_utc(value: datetime, field: str) -> datetime:
    """An aware time as UTC, or a 400/422 naming ``field`` when that instant lies outside
    what a datetime holds (0001-01-01T00:00+05:00 is before year 1 in UTC; PostgreSQL
    would refuse it as a database error)."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(
            f"{field} lies outside the years 1 to 9999 in UTC", field=field
        ) from None
