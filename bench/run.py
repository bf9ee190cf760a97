"""``ticketing bench [--quick] [--out DIR]``: the benchmark suite, one entry point.

Starts what it needs (a scratch database on the configured or an embedded PostgreSQL,
Redis db 6 or an embedded Redis, the API as ``ticketing serve`` in a subprocess, a worker,
the baseline app), loads it with one load generator (wrk, else an asyncio client), and
writes report.json, report.md and latency.png to a folder it prints. Phases whose part of
the service is not built are skipped and listed; a phase that fails is reported and
makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec

from bench import loadgen, options, report
from bench.loadgen import HttpConnection, Op, percentile
from bench.seed import WORDS

ROOT = Path(__file__).resolve().parent.parent
T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Config:
    mode: str
    tickets: int
    http_seconds: float
    connections: int
    append_seconds: float
    writers: tuple[int, ...]
    lag_seconds: float
    keyword_requests: int
    baseline_rows: int
    api_workers: int
    rounds: int = 1  # alternations of each operation with its baseline (see product_http)


# The baseline each HTTP operation is paired with (measured again just before it).
PAIRED_BASELINE = {
    "raise": "baseline_insert",
    "message": "baseline_insert",
    "get_one": "baseline_select",
    "list": "baseline_select",
    "keyword": "baseline_select",
    "list_uncached": "baseline_select",
    "keyword_uncached": "baseline_select",
}

# 3 s per HTTP operation (and 3 s for its paired baseline): the whole quick run stays
# well under two minutes even on a slow machine (110 s at 4 s on 2026-12-07's).
QUICK = Config("quick", 20_000, 3, 64, 2.5, (1, 16, 64), 6, 200, 10_000, 1)
FULL = Config("full", 1_000_000, 15, 64, 8, (1, 16, 64), 20, 1000, 100_000, 1, rounds=3)


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


# --- processes -----------------------------------------------------------------------------


class Proc:
    """A child process (API, worker, baseline) with its log file and resident memory."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            argv,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def rss_mib(self) -> dict[int, float]:
        """Resident memory of this process and its children, MiB per pid."""
        import psutil

        try:
            top = psutil.Process(self.pid)
            procs = [top, *top.children(recursive=True)]
        except psutil.Error:
            return {}
        out: dict[int, float] = {}
        for p in procs:
            with contextlib.suppress(psutil.Error):
                out[p.pid] = p.memory_info().rss / 2**20
        return out

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)  # its own session: the whole tree
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=5)
        self._log.close()


class RssSampler:
    """Samples the resident memory of the running processes twice a second, per label."""

    def __init__(self) -> None:
        self.procs: dict[str, Proc] = {}
        self.label = "idle"
        self.peaks: dict[str, dict[str, float]] = {}  # label -> role -> max MiB per process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            for role, proc in list(self.procs.items()):
                rss = proc.rss_mib()
                if not rss:
                    continue
                # With several server workers the supervisor is not a worker process.
                values = [v for pid, v in rss.items() if pid != proc.pid] if len(rss) > 1 else []
                worker_max = max(values or rss.values())
                per = self.peaks.setdefault(self.label, {})
                per[role] = max(per.get(role, 0.0), worker_max)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def max_for(self, role: str, labels: Sequence[str] | None = None) -> float | None:
        found = [
            v[role]
            for label, v in self.peaks.items()
            if role in v and (labels is None or label in labels)
        ]
        return max(found) if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_http(port: int, path: str, proc: Proc, limit_s: float = 40.0) -> None:
    deadline = time.perf_counter() + limit_s
    last = ""
    while time.perf_counter() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        conn = HttpConnection("127.0.0.1", port)
        try:
            status, _, body = await conn.request("GET", path, {}, None)
            if status < 500:
                return
            last = f"{status} {body[:200]!r}"
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            last = str(exc)
        finally:
            await conn.close()
        await asyncio.sleep(0.2)
    raise RuntimeError(
        f"{proc.name} did not answer {path} in {limit_s:.0f}s ({last}):\n{proc.tail()}"
    )


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One figure for several rounds of the same load: req/s over all of them (requests and
    errors summed), each latency percentile the median of the rounds' (the load generator
    reports percentiles, not histograms, so they cannot be merged exactly); the rounds
    themselves are kept."""
    if len(results) == 1:
        return dict(results[0])
    out = dict(results[0])
    requests = sum(int(r["requests"]) for r in results)
    seconds = sum(float(r["duration_s"]) for r in results)
    out.update(
        requests=requests,
        errors=sum(int(r["errors"]) for r in results),
        duration_s=seconds,
        rps=requests / seconds if seconds else 0.0,
        max_ms=max(float(r["max_ms"]) for r in results),
        rounds=[{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors")} for r in results],
    )
    for k in ("p50_ms", "p90_ms", "p99_ms"):
        out[k] = statistics.median(float(r[k]) for r in results)
    return out


# --- the run ----------------------------------------------------------------------------------


def tool_bench(mode: str, out: Path, **settings: Any) -> Bench:
    """A Bench for a single-purpose tool (``bench.cpusplit``, ``bench.catch_up``): the full
    run's configuration with ``settings`` replaced, RSS sampling on."""
    bench = Bench(replace(FULL, mode=mode, **settings), out)
    bench.r["meta"] = {}
    bench.sampler.start()
    return bench


class Bench:
    def __init__(self, cfg: Config, out: Path) -> None:
        self.cfg = cfg
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.r: dict[str, Any] = {"http": {}, "phases": []}
        self.failed = False
        self.sampler = RssSampler()
        self.procs: list[Proc] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="ticketing-bench-"))
        self.embedded: Any = None
        self.admin_dsn = ""
        self.dsn = ""
        self.db_name = f"ticketing_bench_{uuid.uuid4().hex[:8]}"
        self.extra_dbs: list[str] = []  # scratch databases of single phases, dropped at the end
        self.redis_url = ""
        self.secret = secrets.token_urlsafe(32)
        self.api_port = 0
        self.first_id = 1
        self.last_id = 0
        self.base_env: dict[str, str] = {}
        self.baseline: tuple[Proc, int] | None = None  # the baseline app and its port
        self.baseline_ops: dict[str, Op] = {}

    # -- phase bookkeeping --

    @contextlib.contextmanager
    def phase(self, name: str, needs: Sequence[str] = ()) -> Iterator[Callable[[], bool]]:
        """Time a phase; skip it when a module it needs is missing; record failures."""
        missing = [m for m in needs if not has(m)]
        entry: dict[str, Any] = {"name": name}
        self.r["phases"].append(entry)
        if missing:
            entry.update(status="skipped", detail=f"not built yet: {', '.join(missing)}")
            say(f"{name}: skipped ({entry['detail']})")
            yield lambda: False
            return
        say(f"{name} ...")
        self.sampler.label = name
        started = time.perf_counter()
        try:
            yield lambda: True
            entry["status"] = "ok"
        except Exception as exc:
            self.failed = True
            entry.update(status="failed", detail=f"{type(exc).__name__}: {exc}"[:2000])
            (self.logs / f"{name}.traceback.txt").write_text(traceback.format_exc())
            say(f"{name}: FAILED {type(exc).__name__}: {str(exc)[:500]}")
        finally:
            entry["seconds"] = round(time.perf_counter() - started, 2)
            self.sampler.label = "idle"
            if entry.get("status") == "ok":
                say(f"{name}: done in {entry['seconds']:.1f}s")

    # -- environment --

    async def setup(self) -> None:
        from services.embedded import EmbeddedServers

        db_url = os.environ.get("TICKETING_DATABASE_URL")
        redis_url = os.environ.get("TICKETING_REDIS_URL")
        if not db_url or not redis_url:
            self.embedded = EmbeddedServers(self.tmp)
        if db_url:
            self.admin_dsn = db_url
            self.r["meta"]["database"] = "configured PostgreSQL (scratch database)"
        else:
            say("starting embedded PostgreSQL ...")
            self.admin_dsn = self.embedded.start_postgres()
            self.r["meta"]["database"] = "embedded PostgreSQL"
        if redis_url:
            parts = urlsplit(redis_url)
            if parts.scheme == "unix":  # the path is the socket's: the db goes in the query
                query = urlencode(
                    [*((k, v) for k, v in parse_qsl(parts.query) if k != "db"), ("db", "6")]
                )
                self.redis_url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
            else:
                self.redis_url = urlunsplit((parts.scheme, parts.netloc, "/6", parts.query, ""))
        else:
            say("starting embedded Redis ...")
            self.redis_url = self.embedded.start_redis()
        self.dsn, applied = await self.create_database(self.db_name)
        say(f"scratch database {self.db_name}: {len(applied)} migration(s)")
        self.api_port = free_port()
        self.base_env = {
            **os.environ,
            "TICKETING_DATABASE_URL": self.dsn,
            "TICKETING_REDIS_URL": self.redis_url,
            "TICKETING_JWT_SECRET": self.secret,
            "TICKETING_HOST": "127.0.0.1",
            "TICKETING_RATE_LIMIT_PER_MINUTE": "0",
            # The sweep is measured on its own below; keep the worker's from doing it first.
            "TICKETING_SLA_SWEEP_SECONDS": "86400",
            "TICKETING_LOG_LEVEL": "WARNING",
            "TICKETING_DATA_DIR": str(self.tmp / "data"),
        }

    async def teardown(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
        self.sampler.close()
        if self.admin_dsn:
            for name in [self.db_name, *self.extra_dbs]:
                with contextlib.suppress(Exception):
                    await self.drop_database(name)
        if self.embedded is not None:
            self.embedded.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def spawn(self, name: str, argv: list[str], port: int | None = None) -> Proc:
        env = dict(self.base_env)
        if port is not None:
            env["TICKETING_PORT"] = str(port)
        p = Proc(name, argv, env, self.logs)
        self.procs.append(p)
        return p

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)
        for role, p in list(self.sampler.procs.items()):
            if p is proc:
                del self.sampler.procs[role]

    async def start_api(self) -> Proc:
        # `ticketing serve` when it is built; the same app under uvicorn otherwise.
        if has("services.api.server"):
            argv = [sys.executable, "-m", "services.cli", "serve"]
            self.r["meta"]["api_server"] = "ticketing serve"
        else:
            argv = [sys.executable, "-m", "bench.serving"]
            self.r["meta"]["api_server"] = "bench.serving (uvicorn; services.api.server missing)"
        argv += ["--workers", str(self.cfg.api_workers)]
        api = self.spawn("api", argv, self.api_port)
        await wait_http(self.api_port, "/health/live", api)
        self.sampler.procs["api"] = api
        return api

    def start_worker(self) -> Proc:
        w = self.spawn("worker", [sys.executable, "-m", "services.cli", "worker"])
        self.sampler.procs["worker"] = w
        return w

    # -- helpers --

    def token(self, role: str = "agent") -> str:
        from services.tokens import issue_token

        return issue_token(self.secret, f"bench-{role}", role, name=f"Bench {role}", ttl_s=86400)

    def load(self, port: int, op: Op, key: str, seconds: float | None = None) -> dict[str, Any]:
        res = loadgen.run_load(
            f"http://127.0.0.1:{port}",
            op,
            connections=self.cfg.connections,
            duration_s=seconds or self.cfg.http_seconds,
        )
        figures = asdict(res)
        say(
            f"  {key}: {res.rps:,.0f} req/s, p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms, "
            f"errors {res.errors} ({res.tool})"
        )
        if res.requests and res.errors > res.requests * 0.01:
            raise RuntimeError(f"{key}: {res.errors} of {res.requests} requests failed")
        return figures

    async def wait_projections(self, limit_s: float) -> bool:
        """Wait until every projection checkpoint has reached the log's head."""
        conn = await asyncpg.connect(self.dsn)
        try:
            deadline = time.perf_counter() + limit_s
            while time.perf_counter() < deadline:
                head = await conn.fetchrow(
                    "SELECT transaction_id, position FROM events "
                    "WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot()) "
                    "ORDER BY transaction_id DESC, position DESC LIMIT 1"
                )
                low = await conn.fetchrow(
                    "SELECT transaction_id, position FROM projection_checkpoints "
                    "ORDER BY transaction_id, position LIMIT 1"
                )
                if head is None or (low is not None and (low[0], low[1]) >= (head[0], head[1])):
                    return True
                await asyncio.sleep(0.2)
            return False
        finally:
            await conn.close()

    async def count_events(self) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM events"))
        finally:
            await conn.close()

    # -- phases --

    async def seed(self) -> None:
        from bench.seed import seed_tickets

        step = max(1, self.cfg.tickets // 10)
        last = [0]

        def progress(done: int, total: int) -> None:
            if done - last[0] >= step or done == total:
                last[0] = done
                say(f"  seeded {done:,}/{total:,} tickets")

        started = time.perf_counter()
        self.first_id, self.last_id = await seed_tickets(
            self.dsn, self.cfg.tickets, batch=min(50_000, self.cfg.tickets), progress=progress
        )
        secs = time.perf_counter() - started
        self.r["seed"] = {
            "tickets": self.cfg.tickets,
            "seconds": round(secs, 2),
            "events_per_s": self.cfg.tickets / secs,
        }

    async def append_rate(self) -> None:
        from domain.events import Actor
        from services.commands import CommandService, Context
        from services.db import create_pool
        from services.settings import load_settings

        policy = load_settings({}).sla_policy
        out: dict[str, Any] = {}
        for writers in self.cfg.writers:
            pool = await create_pool(self.dsn, min_size=min(writers, 10), max_size=min(writers, 32))
            try:
                svc = CommandService(pool, policy)
                lat: list[float] = []
                stop_at = time.perf_counter() + self.cfg.append_seconds

                async def writer(
                    i: int,
                    svc: CommandService = svc,
                    lat: list[float] = lat,
                    stop_at: float = stop_at,
                ) -> int:
                    actor = Actor(id=f"writer-{i}", role="customer")
                    n = 0
                    while time.perf_counter() < stop_at:
                        t = time.perf_counter()
                        res = await svc.raise_ticket(
                            Context(actor=actor, dialect="native"),
                            subject="Printer on fire",
                            description="It smokes since the last update",
                            category_id=1,
                        )
                        lat.append(time.perf_counter() - t)
                        n += len(res.events)
                    return n

                started = time.perf_counter()
                counts = await asyncio.gather(*(writer(i) for i in range(writers)))
                secs = time.perf_counter() - started
            finally:
                await pool.close()
            ms = sorted(x * 1000 for x in lat)
            out[str(writers)] = {
                "writers": writers,
                "events": sum(counts),
                "events_per_s": sum(counts) / secs,
                "p50_ms": percentile(ms, 50),
                "p99_ms": percentile(ms, 99),
            }
            say(f"  {writers} writer(s): {sum(counts) / secs:,.0f} events/s")
        self.r["append_rate"] = out

    async def raw_read_decode(self) -> None:
        from bench.rawread import figures, raw_read_decode

        n, secs = await raw_read_decode(self.dsn)
        self.r["raw_read_decode"] = figures(n, [secs])

    async def raw_read_again(self) -> None:
        """A second raw read, after the rebuild: the report keeps the faster of the two."""
        from bench.rawread import figures, raw_read_decode

        first = self.r.get("raw_read_decode")
        if not first:
            return
        n, secs = await raw_read_decode(self.dsn)
        if n == first["events"]:
            self.r["raw_read_decode"] = figures(n, [*first["reads_s"], secs])

    async def built(self) -> None:
        """A scratch database holding the seeded log and its read models: where the
        single-purpose tools start."""
        await self.setup()
        await self.seed()
        await self.rebuild()

    async def rebuild(self) -> None:
        from projections.rebuild import rebuild_all

        n = await self.count_events()
        started = time.perf_counter()
        stats = await rebuild_all(self.dsn)
        secs = time.perf_counter() - started
        self.r["rebuild"] = {
            "events": n,
            "seconds": round(secs, 3),
            "events_per_s": n / secs if secs else 0.0,
            "stats": msgspec.to_builtins(stats),
        }

    async def rebuild_lifecycles(self) -> None:
        """The rebuild next to the raw read again, over a log of whole ticket lifecycles
        (``seed_lifecycles``: raise, assign, a conversation, status changes, and for most
        close and rating; about eight events a ticket) in a scratch database of its own.

        The seeded log holds raised tickets only, one event a ticket: every event is a
        ticket whose summary, vector and term rows the rebuild must write, the worst
        case for a rate in events/s. A help desk's log looks like this one.
        """
        from bench.rawread import figures, raw_read_decode
        from bench.seed import seed_lifecycles
        from projections.rebuild import rebuild_all

        name = f"{self.db_name}_lifecycles"
        self.extra_dbs.append(name)
        dsn, _ = await self.create_database(name)
        await seed_lifecycles(dsn, self.cfg.tickets)
        conn = await asyncpg.connect(dsn)
        try:
            tickets = int(await conn.fetchval("SELECT count(*) FROM streams"))
        finally:
            await conn.close()
        n, raw_s = await raw_read_decode(dsn)
        say(f"  raw read-and-decode of {n:,} events ({tickets:,} tickets): {raw_s:.1f}s")
        started = time.perf_counter()
        stats = await rebuild_all(dsn)
        secs = time.perf_counter() - started
        say(f"  rebuild: {secs:.1f}s")
        again = (await raw_read_decode(dsn))[1]  # the faster read is the one judged against
        say(f"  raw read-and-decode again: {again:.1f}s")
        self.r["rebuild_lifecycles"] = {
            "events": n,
            "tickets": tickets,
            "seconds": round(secs, 3),
            "events_per_s": n / secs if secs else 0.0,
            "raw_read_decode": figures(n, [raw_s, again]),
            "stats": msgspec.to_builtins(stats),
        }
        await self.drop_database(name)

    async def create_database(self, name: str) -> tuple[str, list[str]]:
        """Create and migrate the scratch database ``name``: (its DSN, migrations applied)."""
        from services.db import migrate
        from services.embedded import with_database

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            self.r["meta"]["postgres"] = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        dsn = with_database(self.admin_dsn, name)
        return dsn, await migrate(dsn)

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
        if name in self.extra_dbs:
            self.extra_dbs.remove(name)

    async def initial_catch_up(self) -> None:
        from projections.runner import catch_up
        from services.db import create_pool

        pool = await create_pool(self.dsn)
        try:
            started = time.perf_counter()
            n = await catch_up(pool)
            self.r["initial_catch_up"] = {
                "events": n,
                "seconds": round(time.perf_counter() - started, 3),
            }
        finally:
            await pool.close()

    async def start_baseline(self) -> tuple[Proc, int]:
        """Start the baseline app (it stays up, idle, for the pairs in product_http) and
        define its two operations."""
        from bench.baseline_app import prepare

        rows = await prepare(self.dsn, self.cfg.baseline_rows)
        port = free_port()
        proc = self.spawn(
            "baseline",
            [sys.executable, "-m", "bench.baseline_app", "--workers", str(self.cfg.api_workers)],
            port,
        )
        await wait_http(port, "/rows/1", proc)
        self.sampler.procs["baseline"] = proc
        self.baseline = (proc, port)
        body = msgspec.json.encode(
            {"subject": "Printer on fire", "body": "It smokes since the last update"}
        )
        hdr = {"Content-Type": "application/json"}
        self.baseline_ops = {
            "baseline_insert": Op("baseline_insert", "POST", "/insert", body, hdr),
            "baseline_select": Op(
                "baseline_select", "GET", "/rows/{id}", None, {}, id_range=(1, rows)
            ),
        }
        return self.baseline

    async def baselines(self) -> None:
        """Start the baseline app and measure both baselines once."""
        _, port = await self.start_baseline()
        for key, op in self.baseline_ops.items():
            self.r["http"][key] = self.load(port, op, key)

    def stop_baseline(self) -> None:
        if self.baseline is not None:
            self.r.setdefault("rss", {})["baseline_max_mib"] = self.sampler.max_for("baseline")
            self.stop(self.baseline[0])
            self.baseline = None

    def product_ops(self) -> dict[str, Op]:
        auth = {"Authorization": f"Bearer {self.token('agent')}"}
        js = {**auth, "Content-Type": "application/json"}
        ids = (self.first_id, self.last_id)
        raise_body = msgspec.json.encode(
            {
                "subject": "Printer on fire",
                "description": "It smokes since the last update",
                "category_id": 1,
                "priority": "high",
            }
        )
        msg_body = msgspec.json.encode({"body": "Have you tried turning it off and on again?"})
        return {
            "get_one": Op("get_one", "GET", "/v1/tickets/{id}", None, auth, id_range=ids),
            "list": Op("list", "GET", "/v1/tickets?status=open&priority=high&limit=20", None, auth),
            "keyword": Op(
                "keyword", "GET", "/v1/tickets?q={word}&limit=20", None, auth, words=WORDS
            ),
            # The same two queries with Cache-Control: no-cache, which skips the API's
            # page cache: what a list costs when the read models changed since the last.
            "list_uncached": Op(
                "list_uncached",
                "GET",
                "/v1/tickets?status=open&priority=high&limit=20",
                None,
                {**auth, "Cache-Control": "no-cache"},
            ),
            "keyword_uncached": Op(
                "keyword_uncached",
                "GET",
                "/v1/tickets?q={word}&limit=20",
                None,
                {**auth, "Cache-Control": "no-cache"},
                words=WORDS,
            ),
            "raise": Op("raise", "POST", "/v1/tickets", raise_body, js),
            "message": Op(
                "message", "POST", "/v1/tickets/{id}/messages", msg_body, js, id_range=ids
            ),
        }

    async def product_http(self) -> None:
        # Probe each route once, so a broken route fails fast with its answer.
        ops = self.product_ops()
        for key, op in ops.items():
            conn = HttpConnection("127.0.0.1", self.api_port)
            try:
                import random

                status, _, body = await conn.request(
                    op.method, op.render_path(random.Random(1)), op.headers, op.body
                )
            finally:
                await conn.close()
            if status >= 400:
                raise RuntimeError(
                    f"{key}: {op.method} {op.path} answered {status}: {body[:300]!r}"
                )
        # Each operation alternates with its baseline, ``rounds`` times over the operation's
        # time: on a shared machine the load of other tenants drifts within minutes, and
        # pairs measured back to back, several times over, see the same machine
        # (report.py takes each operation's ratio from its pair).
        rounds = max(1, self.cfg.rounds)
        seconds = self.cfg.http_seconds / rounds
        for key, op in ops.items():
            base = PAIRED_BASELINE[key]
            mine: list[dict[str, Any]] = []
            theirs: list[dict[str, Any]] = []
            for n in range(rounds):
                tag = f" (round {n + 1}/{rounds})" if rounds > 1 else ""
                if self.baseline is not None:
                    self.sampler.label = f"http:{base}"
                    port, base_op = self.baseline[1], self.baseline_ops[base]
                    theirs.append(self.load(port, base_op, f"{base} (pair){tag}", seconds))
                self.sampler.label = f"http:{key}"
                mine.append(self.load(self.api_port, op, key + tag, seconds))
                # the worker's backlog is caught up before the next baseline round runs
                if key in ("raise", "message") and not await self.wait_projections(60):
                    say("  (projections did not catch up within 60 s)")
            self.r["http"][key] = merge_rounds(mine)
            if theirs:
                self.r["http"][key]["paired_baseline"] = {"name": base, **merge_rounds(theirs)}
        self.sampler.label = "http"

    async def projection_lag(self) -> None:
        """Raise tickets through the API at half the measured maximum; time until listed."""
        http_raise = self.r["http"].get("raise")
        if http_raise:
            rate = http_raise["rps"] / 2
            basis = "half of the measured HTTP raise req/s"
        else:
            rate = max(a["events_per_s"] for a in self.r["append_rate"].values()) / 2
            basis = "half of the measured command-service append rate"
        rate = max(1.0, rate)
        ops = self.product_ops()
        op = ops["raise"]
        conns: asyncio.Queue[HttpConnection] = asyncio.Queue()
        for _ in range(self.cfg.connections):
            conns.put_nowait(HttpConnection("127.0.0.1", self.api_port))
        acked: dict[int, float] = {}
        lags: list[float] = []
        errors = 0
        decoder = msgspec.json.Decoder(dict[str, Any])

        async def one() -> None:
            nonlocal errors
            c = await conns.get()
            try:
                status, _, body = await c.request(op.method, op.path, op.headers, op.body)
                if status == 201:
                    acked[int(decoder.decode(body)["id"])] = time.perf_counter()
                else:
                    errors += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                errors += 1
                await c.close()
            finally:
                conns.put_nowait(c)

        stop = asyncio.Event()

        async def poller() -> None:
            conn = await asyncpg.connect(self.dsn)
            try:
                while not (stop.is_set() and not acked):
                    if acked:
                        ids = list(acked)
                        rows = await conn.fetch(
                            "SELECT id FROM ticket_summaries WHERE id = ANY($1::bigint[])", ids
                        )
                        now = time.perf_counter()
                        for r in rows:
                            lags.append(now - acked.pop(r["id"]))
                    await asyncio.sleep(0.002)
            finally:
                await conn.close()

        poll_task = asyncio.create_task(poller())
        tasks: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        total = int(rate * self.cfg.lag_seconds)
        for i in range(total):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        sent_secs = time.perf_counter() - started
        stop.set()
        try:
            await asyncio.wait_for(poll_task, timeout=30)
        except TimeoutError:
            poll_task.cancel()
        while not conns.empty():
            await conns.get_nowait().close()
        ms = sorted(x * 1000 for x in lags)
        self.r["projection_lag"] = {
            "rate_per_s": rate,
            "basis": basis,
            "achieved_per_s": total / sent_secs,
            "samples": len(ms),
            "errors": errors,
            "never_seen": len(acked),
            "p50_ms": percentile(ms, 50),
            "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99),
            "max_ms": ms[-1] if ms else None,
            "how": "time from the 201 to the ticket's row appearing in ticket_summaries, "
            "polled every 2 ms",
        }
        say(
            f"  lag at {rate:,.0f}/s: p50 {percentile(ms, 50):.1f} ms, "
            f"p99 {percentile(ms, 99):.1f} ms"
        )

    async def keyword_latency(self) -> None:
        import random

        # no-cache: this figure is the search itself over the whole table, not a kept page
        op = self.product_ops()["keyword_uncached"]
        rnd = random.Random(7)
        conn = HttpConnection("127.0.0.1", self.api_port)
        lat: list[float] = []
        try:
            for _ in range(self.cfg.keyword_requests):
                path = op.render_path(rnd)
                t = time.perf_counter()
                status, _, body = await conn.request("GET", path, op.headers, None)
                lat.append(time.perf_counter() - t)
                if status != 200:
                    raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
        finally:
            await conn.close()
        pconn = await asyncpg.connect(self.dsn)
        try:
            tickets = int(await pconn.fetchval("SELECT count(*) FROM ticket_summaries"))
        finally:
            await pconn.close()
        ms = sorted(x * 1000 for x in lat)
        self.r["keyword_latency"] = {
            "tickets": tickets,
            "requests": len(ms),
            "p50_ms": percentile(ms, 50),
            "p90_ms": percentile(ms, 90),
            "p99_ms": percentile(ms, 99),
            "max_ms": ms[-1],
            "how": "GET /v1/tickets?q=<word>&limit=20 with Cache-Control: no-cache, one connection",
        }

    async def sla_sweep(self) -> None:
        from services.commands import CommandService
        from services.db import create_pool
        from services.settings import load_settings
        from workers.sla import sweep_once

        pool = await create_pool(self.dsn, max_size=10)
        try:
            open_tickets = int(
                await pool.fetchval(
                    "SELECT count(*) FROM ticket_summaries "
                    "WHERE status NOT IN ('resolved','closed')"
                )
            )
            commands = CommandService(pool, load_settings({}).sla_policy)
            started = time.perf_counter()
            breaches = await sweep_once(pool, commands, datetime.now(UTC))
            secs = time.perf_counter() - started
            started = time.perf_counter()
            again = await sweep_once(pool, commands, datetime.now(UTC))
            idle_secs = time.perf_counter() - started
        finally:
            await pool.close()
        self.r["sla_sweep"] = {
            "open_tickets": open_tickets,
            "seconds": round(secs, 3),
            "breaches": breaches,
            "second_sweep_seconds": round(idle_secs, 3),
            "second_sweep_breaches": again,
        }

    async def audit_verify(self) -> None:
        from services.audit import verify

        started = time.perf_counter()
        rep = await verify(self.dsn)
        secs = time.perf_counter() - started
        self.r["audit_verify"] = {
            "events": rep.events,
            "streams": rep.streams,
            "seconds": round(secs, 2),
            "chain_seconds": round(rep.chain_seconds, 2),
            "projection_seconds": round(rep.projection_seconds, 2),
            "result": "OK" if rep.ok else f"{len(rep.problems)} problem(s)",
        }
        if not rep.ok:
            say("  audit verify found problems:\n" + rep.summary()[:2000])

    # -- orchestration --

    async def run(self) -> None:
        self.sampler.start()
        with self.phase("setup") as ok:
            await self.setup()
        if not self.dsn:
            raise RuntimeError("setup failed; nothing to measure")
        with self.phase("seed") as ok:
            await self.seed()
        with self.phase("append_rate", ["services.commands"]) as ok:
            if ok():
                await self.append_rate()
        with self.phase("raw_read_decode") as ok:
            await self.raw_read_decode()
        built = False
        with self.phase("rebuild", ["projections.rebuild"]) as ok:
            if ok():
                await self.rebuild()
                built = True
        if built:
            with self.phase("raw_read_decode_again") as ok:
                await self.raw_read_again()
        if not built:
            with self.phase("initial_catch_up", ["projections.runner"]) as ok:
                if ok():
                    await self.initial_catch_up()
        # Before the worker starts: its own periodic sweep would record the breaches first.
        with self.phase("sla_sweep", ["workers.sla"]) as ok:
            if ok():
                await self.sla_sweep()
        with self.phase("baselines", ["litestar"]) as ok:
            if ok():
                await self.baselines()
        api_up = False
        with self.phase("start_api_and_worker", ["services.api.app", "workers.main"]) as ok:
            if ok():
                self.start_worker()
                await self.start_api()
                api_up = True
                if not await self.wait_projections(120):
                    say("  (projections did not catch up within 120 s)")
        if api_up:
            with self.phase("product_http") as ok:
                await self.product_http()
            self.stop_baseline()  # idle from here on; gone before the lag is measured
            with self.phase("projection_lag") as ok:
                await self.projection_lag()
            with self.phase("keyword_latency") as ok:
                await self.keyword_latency()
        self.stop_baseline()
        rss = self.r.setdefault("rss", {})
        rss["api_max_worker_mib"] = self.sampler.max_for("api")
        rss["worker_max_mib"] = self.sampler.max_for("worker")
        rss["per_phase"] = self.sampler.peaks
        for p in [p for p in self.procs if p.name in ("api", "worker")]:
            self.stop(p)
        with self.phase("audit_verify", ["services.audit", "projections.rebuild"]) as ok:
            if ok():
                await self.audit_verify()
        # Last, with the API and worker gone: its seeding and rebuild write about a
        # gigabyte of WAL, which would otherwise set off checkpoints in the HTTP phases.
        with self.phase("rebuild_lifecycles", ["projections.rebuild"]) as ok:
            if ok():
                await self.rebuild_lifecycles()


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0.0
    with contextlib.suppress(Exception):
        import psutil

        mem = psutil.virtual_memory().total / 2**30
    cores = os.cpu_count() or 0
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": round(mem, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "summary": f"{cores} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
    }


def default_out(mode: str) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d")
    if mode == "full":
        return ROOT / "bench" / "results" / stamp
    return ROOT / "bench" / "out" / f"{datetime.now().strftime('%Y-%m-%dT%H%M%S')}-quick"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ticketing bench", description=__doc__)
    options.add_arguments(p)
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    overrides: dict[str, Any] = {}
    if args.tickets:
        overrides["tickets"] = args.tickets
    if args.seconds:
        overrides["http_seconds"] = args.seconds
    if args.workers:
        overrides["api_workers"] = args.workers
    if overrides:
        cfg = Config(**{**asdict(cfg), **overrides})
    out = (args.out or default_out(cfg.mode)).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["ticketing bench", *(sys.argv[1:] if argv is None else argv)])
    # The phases run service code in this process; its per-event INFO lines are noise here.
    logging.getLogger("ticketing").setLevel(logging.WARNING)
    bench = Bench(cfg, out)
    bench.r["meta"] = {
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "mode": cfg.mode,
        "config": asdict(cfg),
        "machine": machine(),
        "loadgen": loadgen.tool_name(),
        "connections": cfg.connections,
        "http_seconds": cfg.http_seconds,
        "api_workers": cfg.api_workers,
        "command": command.strip(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    bench.r["note"] = args.note
    say(
        f"ticketing bench ({cfg.mode}): {cfg.tickets:,} tickets, load generator "
        f"{loadgen.tool_name()}, report in {out}"
    )
    # A SIGTERM (kill, a CI job's timeout) stops the run as Ctrl-C does: the API, worker
    # and baseline run in sessions of their own, so only the teardown below stops them
    # and drops the scratch database; without it they outlive the bench.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        asyncio.run(bench.run())
    except KeyboardInterrupt:
        say("interrupted")
        bench.failed = True
    except Exception as exc:
        bench.failed = True
        say(f"bench aborted: {type(exc).__name__}: {exc}")
        (out / "logs").mkdir(exist_ok=True)
        (out / "logs" / "aborted.traceback.txt").write_text(traceback.format_exc())
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut it short
        asyncio.run(bench.teardown())
    bench.r["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    under_results = (ROOT / "bench" / "results") in out.parents
    report.write_all(bench.r, out, out.parent / "history.json" if under_results else None)
    print((out / "report.md").read_text())
    print(
        f"report: {out}/report.md, {out}/report.json"
        + (f", {out}/latency.png" if bench.r.get("chart") else "")
    )
    with contextlib.suppress(OSError):
        (out / "report.json").write_text(json.dumps(bench.r, indent=2, default=str) + "\n")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
