"""WAL written per HTTP request, by relation and by record type, and the full-page images.

``python -m bench.walstat [--ops message,raise] [--tickets N] [--seconds S]``

A command's cost on a large database is mostly where it writes: a reply touches pages
of a random existing ticket, and right after a checkpoint each page's first change is
logged whole (a full-page image). This starts what ``ticketing bench`` starts (scratch
database, seed, rebuild, ``ticketing serve``, a worker), and for each operation issues a
CHECKPOINT (the worst case, and the same start for every operation), drives the load,
waits for the worker to catch up, and reads the WAL between the two positions with
``pg_waldump``. It needs a PostgreSQL on this machine whose WAL directory it can read.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from bench import loadgen
from bench.run import FULL, tool_bench

_RECORD = re.compile(r"rmgr: (\w+)\s+len \(rec/tot\):\s+\d+/\s*(\d+),.*?desc: (\w+)")
_BLOCK0 = re.compile(r"blkref #0: rel \d+/\d+/(\d+)")


@dataclass
class WalSummary:
    """Bytes and full-page images of a stretch of WAL, by relation and by record type."""

    bytes_by_relation: collections.Counter[str] = field(default_factory=collections.Counter)
    images_by_relation: collections.Counter[str] = field(default_factory=collections.Counter)
    bytes_by_record: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def total(self) -> int:
        return sum(self.bytes_by_relation.values())


def summarize(lines: Iterable[str], relations: dict[int, str]) -> WalSummary:
    """Sum ``pg_waldump``'s record lines: each record's total length goes to the relation
    of its first block (its file node, named from ``relations``; "-" without a block),
    and a record whose blocks carry a full-page image ("FPW") counts one image there."""
    out = WalSummary()
    for line in lines:
        m = _RECORD.search(line)
        if not m:
            continue
        rmgr, total, desc = m.group(1), int(m.group(2)), m.group(3)
        block = _BLOCK0.search(line)
        rel = relations.get(int(block.group(1)), block.group(1)) if block else "-"
        out.bytes_by_relation[rel] += total
        out.bytes_by_record[f"{rmgr} {desc}"] += total
        if "FPW" in line:
            out.images_by_relation[rel] += 1
    return out


def find_waldump(server_version_num: int) -> str | None:
    """``pg_waldump`` of the server's major version (Debian keeps one per version)."""
    major = server_version_num // 10_000
    for path in (f"/usr/lib/postgresql/{major}/bin/pg_waldump", shutil.which("pg_waldump")):
        if path and Path(path).is_file():
            return path
    return None


async def main_async(args: argparse.Namespace) -> None:
    bench = tool_bench("walstat", Path(args.out), tickets=args.tickets)
    try:
        await bench.built()
        bench.start_worker()
        await bench.start_api()
        await bench.wait_projections(120)
        conn = await asyncpg.connect(bench.dsn)
        try:
            waldump = find_waldump(int(await conn.fetchval("SHOW server_version_num")))
            wal_dir = Path(await conn.fetchval("SHOW data_directory")) / "pg_wal"
            if waldump is None or not wal_dir.is_dir():
                raise SystemExit(f"needs pg_waldump and a readable {wal_dir}")
            ops = bench.product_ops()
            for key in args.ops.split(","):
                await conn.execute("CHECKPOINT")
                start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                res = loadgen.run_load(
                    f"http://127.0.0.1:{bench.api_port}",
                    ops[key],
                    connections=64,
                    duration_s=args.seconds,
                )
                await bench.wait_projections(60)
                end = await conn.fetchval("SELECT pg_current_wal_insert_lsn()::text")
                relations = {
                    int(r["relfilenode"]): r["relname"]
                    for r in await conn.fetch(
                        "SELECT relfilenode::bigint AS relfilenode, relname FROM pg_class "
                        "WHERE relfilenode <> 0"
                    )
                }
                dump = await asyncio.to_thread(
                    subprocess.run,
                    [waldump, "-p", str(wal_dir), "-s", start, "-e", end],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                report(key, res.rps, res.requests, summarize(dump.stdout.splitlines(), relations))
        finally:
            await conn.close()
    finally:
        await bench.teardown()


def report(key: str, rps: float, requests: int, s: WalSummary, top: int = 10) -> None:
    n = max(1, requests)
    kb = s.total / n / 1e3
    print(f"{key}: {rps:,.0f} req/s over {requests:,} requests; WAL {kb:.1f} kB a request")
    print("  by relation (bytes a request, full-page images a request):")
    for rel, size in s.bytes_by_relation.most_common(top):
        print(f"    {size / n:8,.0f} B  {s.images_by_relation[rel] / n:5.2f}  {rel}")
    print("  by record type (bytes a request):")
    for rec, size in s.bytes_by_record.most_common(top):
        print(f"    {size / n:8,.0f} B  {rec}")


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.walstat", description=__doc__)
    p.add_argument("--ops", default="message,raise")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--tickets", type=int, default=FULL.tickets)
    p.add_argument("--out", default="/tmp/ticketing-walstat")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
