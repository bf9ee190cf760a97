"""`ticketing migrate` waits for a database that does not accept connections yet."""

from __future__ import annotations

import socket

import pytest

from services.cli import _migrate_when_reachable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket closes


async def test_an_unreachable_database_is_retried_then_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dsn = f"postgresql://postgres@127.0.0.1:{_closed_port()}/none"
    with pytest.raises(OSError):
        await _migrate_when_reachable(dsn, wait_s=1.5)
    assert capsys.readouterr().err.count("waiting for the database") >= 1


async def test_a_reachable_database_is_migrated_at_once(fresh_dsn: str) -> None:
    assert await _migrate_when_reachable(fresh_dsn, wait_s=0) == []  # cloned, already current
