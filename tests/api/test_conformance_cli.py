"""Conformance: `ticketing dev` with zero setup, stopped the way a user stops it.

Stopping dev's process group with SIGTERM used to leave the embedded PostgreSQL and
Redis running: they live in their own sessions, and uvicorn re-raises the captured
SIGTERM after its shutdown, which ended the process before any cleanup ran.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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
        # The env file it names lets the other commands reach this instance.
        env_file = Path(data_dir) / "env"
        assert str(env_file) in text and oct(env_file.stat().st_mode & 0o777) == "0o600"
        other = subprocess.run(
            [
                "bash",
                "-c",
                f"set -a; . '{env_file}'; set +a; '{TICKETING}' token --sub u --role agent",
            ],
            cwd=tmp_path,
            env={k: v for k, v in env.items() if k != "TICKETING_PORT"},
            capture_output=True,
            timeout=60,
        )
        assert other.returncode == 0, other.stderr
        fresh = other.stdout.decode().strip()
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/categories", headers={"Authorization": f"Bearer {fresh}"}
        )
        assert r.status_code == 200, r.text
        # A second dev on the same data directory refuses, and leaves the first running.
        second = subprocess.run(
            [str(TICKETING), "dev"],
            cwd=tmp_path,
            env={**env, "TICKETING_PORT": str(_free_port())},
            capture_output=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert b"another `ticketing dev` is running" in second.stderr
        assert answers(), "the first dev stopped when a second one was started"

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


@pytest.mark.skipif(
    os.environ.get("TICKETING_SIGTERM_PROBE") != "1",
    reason="the inside of test_sigterm_stops_the_suites_embedded_servers, run by it",
)
def test_sigterm_probe(servers: object) -> None:
    time.sleep(300)  # holds the embedded servers until the outer test sends SIGTERM


@pytest.mark.skipif(sys.platform != "linux", reason="inspects /proc")
def test_sigterm_stops_the_suites_embedded_servers() -> None:
    # a short directory: Redis's unix socket path may not exceed 107 bytes
    tmp_path = Path(tempfile.mkdtemp(prefix="tk-sigterm-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env.update(TICKETING_SIGTERM_PROBE="1", TMPDIR=str(tmp_path))
    here = Path(__file__)
    probe = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    proc = subprocess.Popen(
        [*probe, f"{here}::test_sigterm_probe"],
        cwd=here.parents[2],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        started = _wait_for(
            lambda: any("redis" in p for p in _processes_mentioning(str(tmp_path))), 180
        )
        assert started, _processes_mentioning(str(tmp_path))
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        assert _wait_for(lambda: not _processes_mentioning(str(tmp_path)), 30), (
            _processes_mentioning(str(tmp_path))
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for line in _processes_mentioning(str(tmp_path)):  # never leave a server behind
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        shutil.rmtree(tmp_path, ignore_errors=True)
