"""One place mapping every error to an HTTP response, in the envelope of the dialect asked.

Statuses are decided here once (``status_for``); how the body looks is decided by the
renderer registered for the request's path. Dialect modules call ``register_renderer``
at import time; the native renderer (problem+json, RFC 9457) answers everything else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    PermissionDeniedException,
    ValidationException,
)

from domain.errors import DomainError, ErrorKind
from services.db import database_unavailable

log = logging.getLogger("ticketing.api.errors")

RETRY_AFTER_S = 1  # Retry-After of a 503 while the database cannot be reached

ErrorRenderer = Callable[[Request[Any, Any, Any], int, str, "dict[str, Any] | None"], Response[Any]]
"""(request, status, human message, details) -> Response.

``details`` may hold ``errors: [{field, message}]`` for validation failures and
``code``: a short machine-readable slug (e.g. ``not_found``, ``ticket_closed``).
"""

WWW_AUTHENTICATE = 'Bearer realm="ticketing", Basic realm="ticketing", charset="UTF-8"'
PROBLEM_JSON = "application/problem+json"

_KIND_STATUS: dict[ErrorKind, int] = {
    "invalid": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "precondition": 412,
    "idempotency": 409,
}
# The native API answers validation failures and reused idempotency keys with 422.
_NATIVE_STATUS: dict[ErrorKind, int] = {**_KIND_STATUS, "invalid": 422, "idempotency": 422}


class TooManyRequests(HTTPException):
    status_code = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            detail=f"rate limit exceeded; retry after {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )


class Unauthenticated(NotAuthorizedException):
    """401 with the challenge every client library understands."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail=detail, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


class Denied(PermissionDeniedException):
    pass


def status_for(kind: ErrorKind, dialect: str) -> int:
    return (_NATIVE_STATUS if dialect == "native" else _KIND_STATUS)[kind]


# --- renderers ---------------------------------------------------------------------------


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """RFC 9457 problem details (what every native error body looks like)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    code: str | None = None
    request_id: str | None = None
    errors: list[FieldError] | None = None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def render_native(
    request: Request[Any, Any, Any], status: int, message: str, details: dict[str, Any] | None
) -> Response[Any]:
    details = details or {}
    errors = details.get("errors")
    problem = Problem(
        type="about:blank",
        title=_phrase(status),
        status=status,
        detail=message,
        instance=request.url.path,
        code=details.get("code"),
        request_id=request_id_of(request),
        errors=[FieldError(field=str(e["field"]), message=str(e["message"])) for e in errors]
        if errors
        else None,
    )
    return Response(
        content=msgspec.json.encode(problem), status_code=status, media_type=PROBLEM_JSON
    )


_RENDERERS: list[tuple[str, Callable[[str], bool], ErrorRenderer]] = []


def register_renderer(dialect: str, matches: Callable[[str], bool], render: ErrorRenderer) -> None:
    """Register (or replace) the error envelope used for paths ``matches`` accepts."""
    for i, (name, _, _) in enumerate(_RENDERERS):
        if name == dialect:
            _RENDERERS[i] = (dialect, matches, render)
            return
    _RENDERERS.append((dialect, matches, render))


def dialect_of(path: str) -> str:
    for name, matches, _ in _RENDERERS:
        if matches(path):
            return name
    return "native"


def renderer_for(path: str) -> tuple[str, ErrorRenderer]:
    for name, matches, render in _RENDERERS:
        if matches(path):
            return name, render
    return "native", render_native


def request_id_of(request: Request[Any, Any, Any]) -> str | None:
    from services.api.middleware import request_id_from_scope

    return request_id_from_scope(request.scope)


# --- the exception handler ---------------------------------------------------------------


_SLUGS = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def _slug(exc: DomainError) -> str:
    """TicketAlreadyClosed -> ticket_already_closed."""
    name = type(exc).__name__
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


_BAD_TEXT = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)
_MISSING_FIELD = re.compile(r"^Object missing required field `([^`]+)`$")
_UNKNOWN_FIELD = re.compile(r"^Object contains unknown field `([^`]+)`$")
_WRONG_TYPE = re.compile(r"^Expected `([^`]+)`, got `([^`]+)`$")
_TYPE_WORDS = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "null": "null",
}


def _type_words(types: str) -> str:
    """msgspec's ``str | null`` as ``a string``: null is left out (an optional field may
    be omitted, and that is what to say)."""
    words = [_TYPE_WORDS.get(t.strip(), t.strip()) for t in types.split("|")]
    return " or ".join(w for w in words if w != "null") or "null"


# Header parameters as the client sends them, not as the handlers' arguments are named.
_HEADER_NAMES = {"idempotency_key": "Idempotency-Key", "if_match": "If-Match"}


def _field_error(field: str, message: str) -> dict[str, str]:
    """Name the field the client got wrong (msgspec reports object-level errors on the
    object: ``data: Object missing required field `reason``` becomes ``reason``)."""
    field = _HEADER_NAMES.get(field, field)
    if field == "data" and message in ("'data'", "data"):
        # Litestar's way of saying the handler's body was never sent.
        return {"field": "body", "message": "the request has no body; send a JSON object"}
    parent = "" if field in ("data", "body") else field + "."
    if m := _MISSING_FIELD.match(message):
        return {"field": parent + m.group(1), "message": "this field is required"}
    if m := _UNKNOWN_FIELD.match(message):
        return {"field": parent + m.group(1), "message": "this field is not accepted here"}
    if m := _WRONG_TYPE.match(message):
        expected, got = _type_words(m.group(1)), _TYPE_WORDS.get(m.group(2), m.group(2))
        # the whole body is the handler's ``data``: name it as the client knows it
        whole = "body" if field == "data" else field
        return {"field": whole, "message": f"must be {expected}, not {got}"}
    return {"field": field, "message": message}


def _validation_errors(exc: ValidationException) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    extra = exc.extra
    if isinstance(extra, list):
        for item in extra:
            if isinstance(item, dict):
                field = item.get("key") or item.get("source") or "body"
                errors.append(_field_error(str(field), str(item.get("message", ""))))
    elif isinstance(extra, dict):
        for k, v in extra.items():
            errors.append({"field": str(k), "message": str(v)})
    return errors


def classify(exc: Exception, dialect: str) -> tuple[int, str, dict[str, Any], dict[str, str]]:
    """(status, message, details, headers) for any exception, in one table."""
    if isinstance(exc, DomainError):
        status = status_for(exc.kind, dialect)
        details: dict[str, Any] = {"code": _slug(exc)}
        if exc.field:
            details["errors"] = [{"field": exc.field, "message": exc.message}]
        return status, exc.message, details, {}
    if isinstance(exc, ValidationException):
        errors = _validation_errors(exc)
        status = 422 if dialect == "native" else 400
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or str(exc.detail)
        message = f"the request is not valid: {summary}"
        return status, message, {"code": "invalid", "errors": errors}, {}
    if isinstance(exc, _BAD_TEXT):
        # A NUL (or bytes PostgreSQL cannot store) in a path, query or field that no
        # handler checked: the client's input is at fault, not the server.
        status = 422 if dialect == "native" else 400
        message = "the request contains a NUL or other character that cannot be stored"
        return status, message, {"code": "invalid"}, {}
    if isinstance(exc, HTTPException):
        status = exc.status_code
        if status == 400 and dialect == "native":
            status = 422
        message = exc.detail or _phrase(status)
        if status == 413:
            message = "the request body is larger than this endpoint accepts"
        elif status == 404 and message == "Not Found":
            message = "no such resource"
        elif status == 405:
            message = "this method is not allowed on this resource"
        elif status == 400 or status == 422:
            message = f"the request is malformed: {message}"
        headers = dict(exc.headers or {})
        return status, message, {"code": _SLUGS.get(status, "error")}, headers
    if database_unavailable(exc):
        message = (
            "the database is unavailable at the moment; retry shortly. A command answered "
            "this way may or may not have been stored: repeat it with the same "
            "Idempotency-Key, or read the ticket before sending it again"
        )
        return 503, message, {"code": "unavailable"}, {"Retry-After": str(RETRY_AFTER_S)}
    return (
        500,
        "internal server error; the request id identifies it in the logs",
        {"code": "internal_error"},
        {},
    )


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    dialect, render = renderer_for(request.url.path)
    status, message, details, headers = classify(exc, dialect)
    if status == 503 and details.get("code") == "unavailable":
        log.warning(
            "database unavailable on %s %s: %s: %s",
            request.method,
            request.scope.get("path_template") or request.url.path,
            type(exc).__name__,
            exc,
        )
    elif status >= 500:
        log.error(
            "unhandled error on %s %s",
            request.method,
            request.scope.get("path_template") or request.url.path,
            exc_info=exc,
        )
    try:
        response = render(request, status, message, details)
    except Exception:  # a broken dialect renderer must not turn a 4xx into a crash
        log.exception("error renderer for %s failed", dialect)
        response = render_native(request, status, message, details)
    for k, v in headers.items():
        response.headers[k] = v
    return response


EXCEPTION_HANDLERS: dict[type[Exception] | int, Callable[..., Response[Any]]] = {
    Exception: handle_exception,
}
