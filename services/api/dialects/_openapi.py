"""What the OpenAPI document says of a dialect's routes beyond their handlers' types.

Each dialect answers errors in its own envelope (SPEC section 7), so its routes document
that envelope for every error status they can answer, in place of the framework's
generic 400 body. Routes that read JSON *or* form data themselves (helpdesk_v1,
customer_response) have no typed body parameter; ``Field`` lists describe their bodies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema

READ_CODES = (400, 401, 403, 404, 429)
WRITE_CODES = (400, 401, 403, 404, 409, 412, 413, 429)
_WHY = {
    400: "Malformed or invalid input (the message names the field)",
    401: "No or bad credentials",
    403: "Authenticated but not allowed (e.g. another customer's ticket)",
    404: "No such ticket",
    409: "Not allowed in the ticket's current state, or an Idempotency-Key reused",
    412: "If-Match names a stale version",
    413: "Request body too large",
    429: "Rate limit exceeded (see Retry-After)",
}


class Field(NamedTuple):
    name: str
    type: Literal["string", "integer", "boolean"]
    required: bool
    description: str


def _body(fields: Sequence[Field]) -> RequestBody:
    schema = Schema(
        type=OpenAPIType.OBJECT,
        properties={
            f.name: Schema(type=OpenAPIType(f.type), description=f.description) for f in fields
        },
        required=[f.name for f in fields if f.required] or None,
    )
    return RequestBody(
        content={
            "application/json": OpenAPIMediaType(schema=schema),
            "application/x-www-form-urlencoded": OpenAPIMediaType(schema=schema),
        },
        required=any(f.required for f in fields),
    )


def _operation_with(body: RequestBody) -> type[Operation]:
    @dataclass
    class WithBody(Operation):
        def __post_init__(self) -> None:
            # a route served by GET and POST alike: only its POST carries the body
            is_get = (self.operation_id or "").endswith("_get")
            if self.request_body is None and not is_get:
                self.request_body = body

    return WithBody


def _per_method_id(prefix: str) -> Any:
    """Operation ids ``<dialect>_<handler>[_by_<path params>]_<method>``: unique for a
    handler that serves several methods on several paths, and telling its GET apart."""

    def operation_id(handler: HTTPRouteHandler, method: Any, components: list[Any]) -> str:
        params = [c.name for c in components if not isinstance(c, str)]
        by = f"_by_{'_'.join(params)}" if params else ""
        verb = getattr(method, "value", method)  # an HttpMethod or its plain name
        return f"{prefix}_{handler.handler_name}{by}_{str(verb).lower()}"

    return operation_id


def document(
    handlers: Sequence[HTTPRouteHandler],
    error: type[msgspec.Struct],
    bodies: Mapping[str, Sequence[Field]] | None = None,
) -> list[HTTPRouteHandler]:
    """``handlers`` with ``error`` as their documented error body, and the bodies named by
    handler function in ``bodies``; returned for the dialect's Router."""
    for handler in handlers:
        methods = set(handler.http_methods)
        codes = READ_CODES if methods <= {"GET", "HEAD"} else WRITE_CODES
        documented: dict[int, ResponseSpec] = {
            code: ResponseSpec(
                data_container=error, description=_WHY[code], generate_examples=False
            )
            for code in codes
        }
        handler.responses = {**documented, **(handler.responses or {})}
        if len(methods) > 1 and handler.operation_id is None:
            handler.operation_id = _per_method_id(error.__module__.rsplit(".", 1)[-1])
        fields = (bodies or {}).get(handler.handler_name)
        if fields is not None:
            handler.operation_class = _operation_with(_body(fields))
    return list(handlers)
