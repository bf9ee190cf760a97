"""`ticketing` commands log each record once: JSON for the service's own once the API
configured it, plain for everything else."""

from __future__ import annotations

import logging

from services.api.middleware import configure_logging
from services.cli import _not_logged_as_json


def record(name: str) -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, "hello", None, None)


def test_the_plain_handler_leaves_the_services_records_to_the_json_one() -> None:
    own = logging.getLogger("ticketing")
    saved = list(own.handlers)
    try:
        own.handlers.clear()
        assert _not_logged_as_json(record("ticketing.api"))  # no JSON handler: plain it is
        configure_logging("INFO")
        assert not _not_logged_as_json(record("ticketing.api"))
        assert not _not_logged_as_json(record("ticketing"))
        assert _not_logged_as_json(record("uvicorn.error"))
        assert _not_logged_as_json(record("ticketingx"))
    finally:
        own.handlers[:] = saved
