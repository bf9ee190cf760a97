"""A bench stopped by SIGTERM (kill, a CI job's timeout) leaves nothing running behind it.

The API, worker and baseline app run in sessions of their own, so a signal to the bench
does not reach them: only its teardown stops them and drops the scratch database.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import psutil

from bench.run import ROOT

SCRATCH = "SELECT datname FROM pg_database WHERE datname LIKE 'ticketing\\_bench\\_%'"


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _serving(kids: list[psutil.Process]) -> bool:
    """The API (``services.cli serve`` or ``bench.serving``) and the worker are up."""
    cmds = []
    for k in kids:
        try:
            cmds.append(" ".join(k.cmdline()))
        except psutil.Error:
            continue
    api = any(" serve" in c or "bench.serving" in c for c in cmds)
    return api and any(" worker" in c for c in cmds)


def _gone(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_a_terminated_bench_stops_its_processes_and_drops_its_database(
    servers, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "TICKETING_DATABASE_URL": servers.admin_dsn,
        "TICKETING_REDIS_URL": servers.redis_url,
    }
    argv = [sys.executable, "-m", "bench.run", "--quick", "--tickets", "2000"]
    argv += ["--seconds", "1", "--out", str(tmp_path / "report")]
    admin = await asyncpg.connect(servers.admin_dsn)
    before = {r[0] for r in await admin.fetch(SCRATCH)}
    log = (tmp_path / "bench.log").open("wb")
    bench = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    kids: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and bench.returncode is None:
            kids = _children(bench.pid)
            if _serving(kids):
                break
            await asyncio.sleep(0.5)
        assert _serving(kids), (tmp_path / "bench.log").read_text()[-3000:]
        ours = {r[0] for r in await admin.fetch(SCRATCH)} - before
        assert len(ours) == 1  # its scratch database, while it runs

        bench.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(bench.wait(), 90) == 1  # reported as failed
        assert all(_gone(k) for k in kids), [k.pid for k in kids if not _gone(k)]
        assert not ours & {r[0] for r in await admin.fetch(SCRATCH)}
        assert "interrupted" in (tmp_path / "bench.log").read_text()
    finally:
        if bench.returncode is None:
            bench.kill()
            await bench.wait()
        for k in kids:  # what a failing bench left behind
            if not _gone(k):
                k.kill()
        for name in {r[0] for r in await admin.fetch(SCRATCH)} - before:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        log.close()
