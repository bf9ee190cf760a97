"""Which failures mean "the database cannot be reached" (503 + Retry-After), and which are
still bugs (500): the classification the API's error handler uses."""

from __future__ import annotations

import asyncpg
import pytest

from services.api.errors import classify
from services.db import database_unavailable

OUTAGES = [
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
    asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
    asyncpg.ObjectNotInPrerequisiteStateError(
        'database "t" is not currently accepting connections'
    ),
    ConnectionRefusedError(111, "Connection refused"),
    TimeoutError(),
]

BUGS = [
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    asyncpg.UniqueViolationError("duplicate key"),
    asyncpg.ObjectNotInPrerequisiteStateError("currval of sequence is not yet defined"),
    asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
    ValueError("boom"),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("dialect", ["native", "support"])
def test_an_unreachable_database_is_503_with_retry_after(exc: Exception, dialect: str) -> None:
    assert database_unavailable(exc)
    status, message, details, headers = classify(exc, dialect)
    assert status == 503 and details["code"] == "unavailable"
    assert headers == {"Retry-After": "1"}
    assert "database is unavailable" in message


@pytest.mark.parametrize("exc", BUGS, ids=lambda e: type(e).__name__)
def test_other_failures_stay_500(exc: Exception) -> None:
    assert not database_unavailable(exc)
    assert classify(exc, "native")[0] == 500
