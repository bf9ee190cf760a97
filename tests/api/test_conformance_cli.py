"""Conformance: `ticketing dev` with zero setup, stopped the way a user stops it.

Stopping dev's process group with SIGTERM used to leave the embedded PostgreSQL and
Redis running: they live in their own sessions, and uvicorn re-raises the captured
SIGTERM after its shutdown, which ended the process before any cleanup ran.

And the other commands' answers to bad input and a broken log: `token` and `api-user add`
refuse what the API would refuse (they printed a token or stored a user nobody could
use), `audit verify` reports an event altered beyond decoding instead of crashing in its
replay, `audit export` writes such a row as it is stored, reads a `--since` without a zone
as UTC (it was the machine's local time) and checks `--ticket`, and a database that is
not there is one line, not a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from domain.events import Actor
from projections.consistency import projections_checkpoint
from projections.runner import catch_up
from services.commands import CommandService, Context
from services.eventstore import EventStore
from services.settings import Settings

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
        # a stop a supervisor asked for is a clean exit (Ctrl-C alone answers 130)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
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


# --- token, api-user, audit: bad input and a broken log ----------------------------------


def _cli(*args: str, env: dict[str, str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(TICKETING), *args], env=env, input=stdin, capture_output=True, timeout=120
    )


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETING_")}
    env.update(settings)
    return env


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--sub", "", "--role", "agent"], b"--sub must not be empty"),
        (["--sub", "   ", "--role", "agent"], b"--sub must not be empty"),
        (["--sub", "a\x01b", "--role", "agent"], b"--sub must not contain control"),
        (["--sub", "u", "--role", "agent", "--name", "x\x7fy"], b"--name must not contain"),
        (["--sub", "u", "--role", "agent", "--ttl", "0"], b"--ttl must be a positive"),
        (["--sub", "u", "--role", "agent", "--ttl", "-60"], b"--ttl must be a positive"),
    ],
)
def test_token_refuses_a_token_the_api_would_refuse(
    tmp_path: Path, args: list[str], said: bytes
) -> None:
    env = _env(TICKETING_JWT_SECRET="cli-secret-" + "x" * 32)
    r = subprocess.run(
        [str(TICKETING), "token", *args], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == b""
    assert said in r.stderr


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
@pytest.mark.parametrize("name", ["", "team:billing", "bad\x1bname"])
async def test_api_user_add_refuses_a_name_http_basic_cannot_send(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, tmp_path: Path, name: str
) -> None:
    env = _env(TICKETING_DATABASE_URL=fresh_dsn)
    r = await asyncio.to_thread(
        _cli, "api-user", "add", name, "--role", "agent", env=env, stdin=b"long-enough-pw\n"
    )
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert b"HTTP Basic" in r.stderr and b"Traceback" not in r.stderr
    assert await fresh_pool.fetchval("SELECT count(*) FROM api_users WHERE name = $1", name) == 0


async def _tickets(pool: asyncpg.Pool, n: int) -> list[int]:
    service = CommandService(pool, Settings().sla_policy)
    customer = Actor(id="cli-cust", role="customer", name="Cy")
    agent = Actor(id="cli-agent", role="agent", name="Al")
    ids = []
    for i in range(n):
        r = await service.raise_ticket(
            Context(actor=customer), subject=f"CLI {i}", description="x", category_id=1
        )
        await service.assign(Context(actor=agent), r.ticket.id, assignee="cli-agent")
        ids.append(r.ticket.id)
    for _ in range(1200):  # the projections at the head of the log, as a worker would
        await catch_up(pool)
        if await projections_checkpoint(pool) == await EventStore(pool).head():
            return ids
        await asyncio.sleep(0.05)
    raise AssertionError("the projections did not catch up")


async def _tamper(pool: asyncpg.Pool, sql: str, *args: object) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        await conn.execute(sql, *args)
        await conn.execute("ALTER TABLE events ENABLE TRIGGER USER")


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
@pytest.mark.parametrize(
    ("alteration", "said"),
    [
        ("UPDATE events SET type = 'Bogus' WHERE position = $1", b"'Bogus' is not an event type"),
        (
            """UPDATE events SET data = '{"type":"TicketAssigned"}' WHERE position = $1""",
            b"cannot be decoded: Object missing required field `assignee`",
        ),
    ],
)
async def test_audit_verify_reports_an_event_altered_beyond_decoding_and_exits_non_zero(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, alteration: str, said: bytes
) -> None:
    ids = await _tickets(fresh_pool, 2)
    position = await fresh_pool.fetchval(
        "SELECT position FROM events WHERE stream_id = $1 AND version = 2", ids[0]
    )
    await _tamper(fresh_pool, alteration, position)
    env = _env(TICKETING_DATABASE_URL=fresh_dsn)
    r = await asyncio.to_thread(_cli, "audit", "verify", env=env)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert f"ticket {ids[0]}: event version 2 (position {position})".encode() in r.stdout
    assert said in r.stdout
    assert b"FAILED" in r.stdout and b"projections were not compared" in r.stdout
    # the stream's head is not reported as a second, misleading problem
    assert b"streams table" not in r.stdout
    # and the export still carries every row, the altered one as it is stored
    r = await asyncio.to_thread(_cli, "audit", "export", "--ticket", str(ids[0]), env=env)
    assert r.returncode == 0, r.stderr.decode()
    lines = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [e["version"] for e in lines] == [1, 2]
    assert lines[1]["position"] == position


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
async def test_audit_export_reads_a_since_without_a_zone_as_utc_and_checks_the_ticket_id(
    fresh_pool: asyncpg.Pool, fresh_dsn: str
) -> None:
    await _tickets(fresh_pool, 1)
    await asyncio.sleep(0.05)
    cut = datetime.now(UTC)
    later = await _tickets(fresh_pool, 1)
    naive = cut.replace(tzinfo=None).isoformat()
    # a machine whose local time is not UTC (India: UTC+05:30) reads it the same way
    env = _env(TICKETING_DATABASE_URL=fresh_dsn, TZ="Asia/Kolkata")
    r = await asyncio.to_thread(_cli, "audit", "export", "--since", naive, env=env)
    assert r.returncode == 0, r.stderr.decode()
    exported = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert {e["stream_id"] for e in exported} == set(later)
    for bad in ("0", str(2**63)):
        r = await asyncio.to_thread(_cli, "audit", "export", "--ticket", bad, env=env)
        assert r.returncode == 2, (bad, r.stderr)
        assert b"--ticket must be a ticket id" in r.stderr and b"Traceback" not in r.stderr


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
@pytest.mark.parametrize(
    "command", [["audit", "verify"], ["api-user", "disable", "nobody"], ["projections", "rebuild"]]
)
async def test_a_database_that_is_not_there_is_one_clear_line_not_a_traceback(
    fresh_dsn: str, command: list[str]
) -> None:
    # the same server, another database name (the embedded server's DSN names its socket
    # directory in the query string, so only the path changes)
    missing = urlunsplit(urlsplit(fresh_dsn)._replace(path="/no_such_database_for_the_cli"))
    r = await asyncio.to_thread(_cli, *command, env=_env(TICKETING_DATABASE_URL=missing))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert b'database error: database "no_such_database_for_the_cli" does not exist' in r.stderr


@pytest.mark.skipif(not TICKETING.exists(), reason="the ticketing script is not installed")
async def test_a_database_socket_that_is_not_there_is_one_clear_line(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@/x?host={tmp_path}"
    r = await asyncio.to_thread(_cli, "audit", "verify", env=_env(TICKETING_DATABASE_URL=nowhere))
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert b"Traceback" not in r.stderr, r.stderr.decode()
    assert b"cannot connect" in r.stderr
