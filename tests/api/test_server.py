"""`serve` refuses to start without a token key, with a message that says what to set."""

from __future__ import annotations

import pytest

from services.api.server import serve, serve_async
from services.settings import Settings


def test_serve_refuses_without_a_jwt_secret_or_key() -> None:
    with pytest.raises(SystemExit) as info:
        serve(Settings(database_url="postgresql://127.0.0.1/none"))
    assert "TICKETING_JWT_SECRET" in str(info.value)
    assert "TICKETING_JWT_PUBLIC_KEY" in str(info.value)


async def test_serve_async_refuses_too() -> None:
    with pytest.raises(SystemExit):
        await serve_async(Settings(database_url="postgresql://127.0.0.1/none"))


def test_a_short_secret_is_warned_about_not_refused(caplog: pytest.LogCaptureFixture) -> None:
    from services.api.server import require_key

    with caplog.at_level("WARNING", logger="ticketing.api"):
        require_key(Settings(database_url="postgresql://127.0.0.1/none", jwt_secret="q7Zx"))
    assert "shorter than 32 bytes" in caplog.text
    assert "q7Zx" not in caplog.text  # the secret itself is never logged
    caplog.clear()
    with caplog.at_level("WARNING", logger="ticketing.api"):
        require_key(Settings(database_url="postgresql://127.0.0.1/none", jwt_secret="k" * 40))
    assert caplog.text == ""
