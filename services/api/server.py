"""Run the API under uvicorn (uvloop + httptools), in one or several processes.

uvicorn over granian by measurement (2026-11-22, the real app, wrk -c64, alternating
runs): raise 2,399/2,697 vs 2,223/2,299 req/s, get-one 5,549/5,236 vs 5,035/5,535.

``serve`` is ``ticketing serve``; ``serve_async`` runs inside ``ticketing dev``'s loop.
With several worker processes each child rebuilds the app from the same Settings,
passed down as JSON in one environment variable (never re-read from the shell).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import msgspec
import uvicorn

from services.gctune import tune_for_serving
from services.settings import Settings

_SETTINGS_ENV = "TICKETING__SERVE_SETTINGS_JSON"
MIN_SECRET_BYTES = 32  # HS256: a secret as long as the hash (RFC 7518 section 3.2)

NO_KEY_MESSAGE = (
    "refusing to start: no token key is configured. Set TICKETING_JWT_SECRET (HS256) or "
    "TICKETING_JWT_PUBLIC_KEY (PEM, RS256/ES256) - without one no request can be authenticated."
)


def require_key(settings: Settings) -> None:
    if not (settings.jwt_secret or settings.jwt_public_key):
        raise SystemExit(NO_KEY_MESSAGE)
    if not settings.database_url:
        raise SystemExit("refusing to start: TICKETING_DATABASE_URL is not set")
    if settings.jwt_secret and len(settings.jwt_secret.encode()) < MIN_SECRET_BYTES:
        # not refused (a local trial may use a short one), but never silently
        logging.getLogger("ticketing.api").warning(
            "TICKETING_JWT_SECRET is shorter than %d bytes: tokens signed with it can be "
            "forged by guessing it; use a long random one (ticketing dev makes one)",
            MIN_SECRET_BYTES,
        )


def _config_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",
        "access_log": False,  # our own access log is structured and never logs query strings
        "proxy_headers": False,
        "server_header": False,
        "log_level": settings.log_level.lower(),
        "timeout_graceful_shutdown": 10,
    }


def app_from_env() -> Any:
    """Factory used by each worker process when ``workers > 1``."""
    from services.api.app import create_app

    raw = os.environ.get(_SETTINGS_ENV)
    if raw is None:
        from services.settings import load_settings

        settings = load_settings()
    else:
        settings = msgspec.json.decode(raw, type=Settings)
    app = create_app(settings)
    tune_for_serving()
    return app


def serve(settings: Settings, workers: int | None = None) -> None:
    require_key(settings)
    n = max(1, workers if workers is not None else settings.workers)
    if n == 1:
        from services.api.app import create_app

        app = create_app(settings)
        tune_for_serving()
        uvicorn.run(app, **_config_kwargs(settings))
        return
    os.environ[_SETTINGS_ENV] = msgspec.json.encode(settings).decode()
    uvicorn.run(
        "services.api.server:app_from_env", factory=True, workers=n, **_config_kwargs(settings)
    )


async def serve_async(settings: Settings) -> None:
    """Serve in the running event loop until cancelled (``ticketing dev``)."""
    require_key(settings)
    from services.api.app import create_app

    kwargs = _config_kwargs(settings)
    kwargs["loop"] = "none"  # the caller's loop
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **kwargs))
    await server.serve()
