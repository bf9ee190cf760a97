"""Domain errors are values: each carries a ``kind`` that every API maps to a status once."""

from __future__ import annotations

from typing import ClassVar, Literal

ErrorKind = Literal["invalid", "forbidden", "not_found", "conflict", "precondition", "idempotency"]


class DomainError(Exception):
    kind: ClassVar[ErrorKind] = "conflict"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(DomainError):
    """Malformed or out-of-range input (400 / 422)."""

    kind = "invalid"


class Forbidden(DomainError):
    """The actor may not do this (403)."""

    kind = "forbidden"


class NotRequester(Forbidden):
    pass


class TicketNotFound(DomainError):
    kind = "not_found"


class InvalidState(DomainError):
    """The command is not allowed in the ticket's current state (409)."""

    kind = "conflict"


class TicketAlreadyClosed(InvalidState):
    pass


class VersionMismatch(DomainError):
    """The caller's If-Match version is stale (412)."""

    kind = "precondition"


class IdempotencyKeyReused(DomainError):
    """Same Idempotency-Key, different request body (409; native 422)."""

    kind = "idempotency"
