"""API load: raise / message / get / list at 64 connections, next to a bare INSERT endpoint.

Runs the real service as ``ticketing serve`` (uvicorn, uvloop, httptools) plus a worker on
a scratch database, seeds tickets, then drives each operation with the suite's load
generator (wrk when installed, else an asyncio client) and prints req/s and p50/p99 per
operation next to the bare Litestar app of ``bench.baseline_app`` (one INSERT per
request, same server options), so the product's overhead reads as a ratio.

    TICKETING_DATABASE_URL=postgresql://postgres@127.0.0.1/postgres \\
    TICKETING_REDIS_URL=redis://127.0.0.1:6379/2 python -m bench.api_load [--seconds 10]

Without the two variables it starts embedded servers (slower, but zero setup).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench.loadgen import Op
from bench.run import QUICK, Bench, say

OPS = ("raise", "message", "get_one", "list")


async def run(seconds: float, connections: int, tickets: int, workers: int, out: Path) -> dict:
    cfg = replace(
        QUICK,
        mode="api_load",
        http_seconds=seconds,
        connections=connections,
        tickets=tickets,
        api_workers=workers,
        baseline_rows=1000,
    )
    bench = Bench(cfg, out)
    bench.r["meta"] = {"started_at": datetime.now(UTC).isoformat(), "mode": "api_load"}
    await bench.setup()
    bench.sampler.start()
    try:
        await bench.seed()
        await bench.start_api()
        bench.start_worker()
        if not await bench.wait_projections(120):
            say("projections did not catch up with the seed within 120 s")
        await bench.baselines()
        ops: dict[str, Op] = bench.product_ops()
        for key in OPS:
            bench.load(bench.api_port, ops[key], key)
            if key in ("raise", "message"):
                await bench.wait_projections(60)
        # a list over a small result set: what a customer's own list costs
        auth = {"Authorization": f"Bearer {bench.token('customer')}"}
        own = Op("list_own", "GET", "/v1/tickets?limit=20", None, auth)
        bench.load(bench.api_port, own, "list_own")
    finally:
        await bench.teardown()
    return bench.r


def table(r: dict) -> str:
    http = r["http"]
    base = http.get("baseline_insert", {})
    base_rps = base.get("rps") or 0.0
    lines = [
        f"{'operation':<16}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}{'vs INSERT':>11}",
    ]
    for key in ("baseline_insert", "baseline_select", *OPS, "list_own"):
        h = http.get(key)
        if not h:
            continue
        ratio = f"{h['rps'] / base_rps:.2f}x" if base_rps else "-"
        lines.append(
            f"{key:<16}{h['rps']:>10,.0f}{h['p50_ms']:>10.2f}{h['p99_ms']:>10.2f}"
            f"{h['errors']:>8}{ratio:>11}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.api_load", description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0, help="seconds per operation")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--tickets", type=int, default=20_000, help="tickets seeded before the run")
    p.add_argument("--workers", type=int, default=1, help="API worker processes")
    p.add_argument("--out", type=Path, default=None, help="folder for api_load.json and logs")
    args = p.parse_args(argv)
    logging.getLogger("ticketing").setLevel(logging.WARNING)
    out = args.out or Path(tempfile.mkdtemp(prefix="api-load-"))
    out.mkdir(parents=True, exist_ok=True)
    r = asyncio.run(run(args.seconds, args.connections, args.tickets, args.workers, out))
    (out / "api_load.json").write_text(json.dumps(r, indent=2, default=str))
    print(table(r))
    print(f"\n(details in {out / 'api_load.json'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
