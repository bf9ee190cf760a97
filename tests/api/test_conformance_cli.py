"""Conformance: `ticketing dev` with zero setup, stopped the way a user stops it.

Stopping dev's process group with SIGTERM used to leave the embedded PostgreSQL and
Redis running: they live in their own sessions, and uvicorn re-raises the captured
SIGTERM after its shutdown, which ended the process before any cleanup ran.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

TICKETING = Path(sys.executable).with_name("ticketing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stat = (proc / "stat").read_text()
            cwd = os.readlink(proc / "cwd")  # redis-server works in its data directory
        except OSError:
            continue
        if (text in cmdline or cwd.startswith(text)) and ") Z " not in stat:  # not zombies
            found.append(f"{proc.name}: {cmdline}")
    return found


def _wait_for(predicate: object, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
@pytest.mark.skipif(sys.platform != "linux", reason="inspects /proc")
def test_dev_prints_url_docs_and_token_and_sigterm_stops_the_embedded_servers(
    tmp_path: Path,
) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_PORT"] = str(port)
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(TICKETING), "dev"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    data_dir = str(tmp_path / ".ticketing")
    try:
        assert _wait_for(lambda: b"admin token" in log.read_bytes(), 180), log.read_text()
        text = log.read_text()
        assert f"http://127.0.0.1:{port}" in text
        assert "/schema" in text
        token = next(
            line.split(":", 1)[1].strip() for line in text.splitlines() if "admin token" in line
        )

        def answers() -> bool:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/v1/categories",
                    headers={"Authorization": f"Bearer {token}"},
                )
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        assert _wait_for(answers, 60), log.read_text()
        running = _processes_mentioning(data_dir)
        assert any("postgres" in p for p in running), running
        assert any("redis" in p for p in running), running
        # The worker's per-job lines must not bury the URL and the token.
        assert "catch_up" not in log.read_text()

        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        assert _wait_for(lambda: not _processes_mentioning(data_dir), 30), (
            _processes_mentioning(data_dir),
            log.read_text()[-2000:],
        )
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        for line in _processes_mentioning(data_dir):  # never leave a server behind
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)


def test_serve_without_a_secret_refuses_with_a_clear_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env["TICKETING_DATABASE_URL"] = "postgresql://127.0.0.1:1/none"
    env["TICKETING_REDIS_URL"] = "redis://127.0.0.1:1/0"
    r = subprocess.run(
        [str(TICKETING), "serve"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert r.returncode != 0
    assert b"TICKETING_JWT_SECRET" in r.stderr
