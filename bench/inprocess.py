"""CPU per request through the real ASGI app, with no HTTP server and no load generator.

``python -m bench.inprocess [--ops get,list,raise,message,keyword] [--requests N]``

On a 2-core machine the HTTP figures of ``ticketing bench`` move with everything else
that runs; the process CPU time that one request costs the app does not. This seeds a
scratch database (``TICKETING_DATABASE_URL``'s server, or an embedded one), builds the
read models, then drives the product's app and the baseline app (bench/baseline_app.py)
in this process through a minimal ASGI driver, 16 requests at a time, and prints CPU
microseconds per request, req/s and the garbage collections it took. PostgreSQL's own
CPU is not in these figures. Run it while profiling: ``py-spy record -- python -m ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

RAISE = (
    b'{"subject":"Printer on fire","description":"It smokes since the last update",'
    b'"category_id":1,"priority":"high"}'
)
MESSAGE = b'{"body":"Have you tried turning it off and on again?"}'
ROW = b'{"subject":"Printer on fire","body":"It smokes since the last update"}'

Request = tuple[str, str, bytes, bytes]  # method, path, query string, body


async def _lifespan(app: Any) -> None:
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "lifespan.startup"})

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        outbox.put_nowait(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.get_running_loop().create_task(app(scope, receive, send))
    started = await outbox.get()
    if started["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"app did not start: {started}")


async def _call(app: Any, req: Request, token: str) -> int:
    method, path, query, body = req
    headers = [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {token}".encode())]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # no disconnect while the app works
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


async def _measure(
    app: Any, make: Callable[[], Request], token: str, n: int, concurrency: int
) -> dict[str, Any]:
    for _ in range(50):  # warm caches, prepared statements, pools
        await _call(app, make(), token)
    collections = [0]

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections[0] += 1

    gc.callbacks.append(count)
    codes: dict[int, int] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            code = await _call(app, make(), token)
            codes[code] = codes.get(code, 0) + 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    gc.callbacks.remove(count)
    return {"cpu_us": 1e6 * cpu / n, "rps": n / wall, "gc": collections[0], "codes": codes}


async def run(dsn: str, redis_url: str, ops: Sequence[str], n: int, tickets: int) -> None:
    from bench.baseline_app import create_baseline_app, prepare
    from bench.seed import WORDS, seed_tickets
    from projections.runner import catch_up
    from services.api.app import create_app
    from services.db import create_pool, migrate
    from services.gctune import tune_for_serving
    from services.settings import load_settings
    from services.tokens import issue_token

    await migrate(dsn)
    first, last = await seed_tickets(dsn, tickets)
    pool = await create_pool(dsn)
    try:
        await catch_up(pool)
    finally:
        await pool.close()
    rows = await prepare(dsn, 10_000)
    secret = secrets.token_urlsafe(32)
    settings = load_settings(
        {
            "TICKETING_DATABASE_URL": dsn,
            "TICKETING_REDIS_URL": redis_url,
            "TICKETING_JWT_SECRET": secret,
            "TICKETING_RATE_LIMIT_PER_MINUTE": "0",
            "TICKETING_LOG_LEVEL": "WARNING",
        }
    )
    token = issue_token(secret, "bench-agent", "agent", name="Bench", ttl_s=3600)
    rnd = random.Random(1)
    makers: dict[str, Callable[[], Request]] = {
        "get": lambda: ("GET", f"/v1/tickets/{rnd.randint(first, last)}", b"", b""),
        "list": lambda: ("GET", "/v1/tickets", b"status=open&priority=high&limit=20", b""),
        "keyword": lambda: ("GET", "/v1/tickets", f"q={rnd.choice(WORDS)}".encode(), b""),
        "raise": lambda: ("POST", "/v1/tickets", b"", RAISE),
        "message": lambda: (
            "POST",
            f"/v1/tickets/{rnd.randint(first, last)}/messages",
            b"",
            MESSAGE,
        ),
        "baseline_select": lambda: ("GET", f"/rows/{rnd.randint(1, rows)}", b"", b""),
        "baseline_insert": lambda: ("POST", "/insert", b"", ROW),
    }
    product = create_app(settings)
    baseline = create_baseline_app(dsn)
    await _lifespan(product)
    await _lifespan(baseline)
    tune_for_serving()  # as `ticketing serve` does after building the app
    for op in ops:
        app = baseline if op.startswith("baseline") else product
        r = await _measure(app, makers[op], token, n, 16)
        print(
            f"{op:16s} {r['cpu_us']:7.0f} us CPU/request  {r['rps']:7.0f} req/s  "
            f"gc {r['gc']:4d}  statuses {r['codes']}",
            flush=True,
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    p.add_argument(
        "--ops",
        default="baseline_select,get,list,keyword,baseline_insert,raise,message",
        help="comma-separated: get, list, keyword, raise, message, baseline_select, "
        "baseline_insert",
    )
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--tickets", type=int, default=20_000)
    args = p.parse_args(argv)
    from services.embedded import EmbeddedServers, with_database

    admin = os.environ.get("TICKETING_DATABASE_URL")
    redis_url = os.environ.get("TICKETING_REDIS_URL")
    embedded = None
    if not admin or not redis_url:
        embedded = EmbeddedServers(Path(tempfile.mkdtemp(prefix="ticketing-inprocess-")))
        admin = admin or embedded.start_postgres()
        redis_url = redis_url or embedded.start_redis()
    name = f"ticketing_inprocess_{uuid.uuid4().hex[:8]}"

    async def scratch(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(scratch(f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(
            run(
                with_database(admin, name),
                redis_url,
                args.ops.split(","),
                args.requests,
                args.tickets,
            )
        )
    finally:
        asyncio.run(scratch(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if embedded is not None:
            embedded.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
