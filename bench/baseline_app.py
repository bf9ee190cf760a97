"""The baselines: a bare Litestar + msgspec app doing one asyncpg statement per request.

``POST /insert`` decodes a small JSON body and INSERTs it as one row; ``GET /rows/{id}``
is one primary-key SELECT. They show what this machine, server and database can do at
all, so the product's figures are quoted as ratios against them. The app uses the
service's own pool settings (``services.db.create_pool``) and is served the same way as
the product (``python -m bench.baseline_app`` mirrors ``ticketing serve``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar, Request, get, post
from litestar.exceptions import NotFoundException

from services.db import create_pool

TABLE_SQL = """
CREATE TABLE IF NOT EXISTS bench_baseline (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    data        json NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
)
"""


class Row(msgspec.Struct):
    subject: str
    body: str
    priority: str = "medium"


class Stored(msgspec.Struct):
    id: int
    data: Row


_encoder = msgspec.json.Encoder()
_row_decoder = msgspec.json.Decoder(Row)


async def prepare(dsn: str, rows: int) -> int:
    """Create the baseline table and fill it with ``rows`` rows for the SELECT baseline."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(TABLE_SQL)
        have = await conn.fetchval("SELECT count(*) FROM bench_baseline")
        if have < rows:
            data = _encoder.encode(Row(subject="Printer on fire", body="x" * 200)).decode()
            await conn.execute(
                "INSERT INTO bench_baseline (data) SELECT $1::json FROM generate_series(1, $2)",
                data,
                rows - have,
            )
        await conn.execute("ANALYZE bench_baseline")
        return int(await conn.fetchval("SELECT max(id) FROM bench_baseline"))
    finally:
        await conn.close()


def create_baseline_app(dsn: str, *, min_size: int = 2, max_size: int = 10) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            yield
        finally:
            await app.state.pool.close()

    @post("/insert", status_code=201)
    async def insert(request: Request[Any, Any, Any]) -> Stored:
        row = _row_decoder.decode(await request.body())
        new_id = await request.app.state.pool.fetchval(
            "INSERT INTO bench_baseline (data) VALUES ($1::json) RETURNING id",
            _encoder.encode(row).decode(),
        )
        return Stored(id=new_id, data=row)

    @get("/rows/{row_id:int}")
    async def select(request: Request[Any, Any, Any], row_id: int) -> Stored:
        found = await request.app.state.pool.fetchrow(
            "SELECT id, data FROM bench_baseline WHERE id = $1", row_id
        )
        if found is None:
            raise NotFoundException(f"row {row_id} not found")
        return Stored(id=found["id"], data=_row_decoder.decode(found["data"]))

    return Litestar(
        route_handlers=[insert, select], lifespan=[lifespan], logging_config=None, debug=False
    )


def app_from_env() -> Litestar:
    """Factory for ASGI servers: the DSN and pool sizes come from the environment."""
    from services.gctune import tune_for_serving

    app = create_baseline_app(
        os.environ["TICKETING_DATABASE_URL"],
        min_size=int(os.environ.get("TICKETING_POOL_MIN_SIZE", "2")),
        max_size=int(os.environ.get("TICKETING_POOL_MAX_SIZE", "10")),
    )
    tune_for_serving()  # the product's serve does it: the same process settings for both
    return app


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.baseline_app", description=__doc__)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    from bench.serving import serve_factory

    serve_factory("bench.baseline_app:app_from_env", workers=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
