"""Where the CPU of one HTTP request goes, by process: API, worker, PostgreSQL, Redis, wrk.

``python -m bench.cpusplit [--ops raise,message,...] [--seconds S] [--tickets N]``

On a 2-core machine every process of the run shares the same cores, so a ratio against
a baseline is decided by the total CPU one request costs, not the API's alone. This
starts what ``ticketing bench`` starts (scratch database, seed, rebuild, baseline app,
``ticketing serve``, a worker), drives each operation with the same load generator, and
prints CPU milliseconds per request for each group of processes, from /proc (utime +
stime of every process of the group, PostgreSQL backends included). Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from bench import loadgen
from bench.loadgen import Op
from bench.run import Bench, tool_bench

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_by_group(groups: dict[str, Callable[[int, str], bool]]) -> dict[str, float]:
    """Seconds of CPU used so far by the processes of each group (matched on pid, cmdline)."""
    totals = dict.fromkeys(groups, 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        used = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        for name, match in groups.items():
            if match(pid, cmd):
                totals[name] += used
                break
    return totals


def _children(pid: int) -> set[int]:
    found = {pid}
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            kids = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            for k in kids:
                found |= _children(int(k))
    except OSError:
        pass
    return found


def measure(bench: Bench, port: int, op: Op, seconds: float, roles: dict[str, int]) -> None:
    """Run one load and print CPU ms per request by process group."""
    pids = {role: _children(pid) for role, pid in roles.items()}
    groups: dict[str, Callable[[int, str], bool]] = {
        **{role: (lambda p, c, s=s: p in s) for role, s in pids.items()},
        "postgres": lambda p, c: c.startswith("postgres:") or "/postgres " in c,
        "redis": lambda p, c: "redis-server" in c,
        "loadgen": lambda p, c: c.startswith("wrk "),
    }
    wall = time.perf_counter()
    before = _cpu_by_group(groups)
    before["bench"] = time.process_time()
    res = loadgen.run_load(f"http://127.0.0.1:{port}", op, connections=64, duration_s=seconds)
    after = _cpu_by_group(groups)
    after["bench"] = time.process_time()
    wall = time.perf_counter() - wall
    n = max(1, res.requests)
    # wrk exits before we read its CPU: take the load generator's share from wall time
    parts = {k: (after[k] - before[k]) * 1e3 / n for k in after if k != "loadgen"}
    total = sum(parts.values())
    cols = "  ".join(f"{k} {v:6.3f}" for k, v in parts.items())
    print(
        f"{op.name:18s} {res.rps:8,.0f} req/s  ms CPU/request: {cols}  "
        f"sum {total:6.3f} (+loadgen; wall {wall:.1f}s x 2 cores = {2e3 * wall / n:.3f})",
        flush=True,
    )


async def main_async(args: argparse.Namespace) -> None:
    bench = tool_bench("cpusplit", Path(args.out), tickets=args.tickets, baseline_rows=10_000)
    try:
        await bench.built()
        ops = bench.product_ops()
        wanted = args.ops.split(",")
        if "baseline" in wanted:
            proc, port = await bench.start_baseline()
            for op in bench.baseline_ops.values():
                measure(bench, port, op, args.seconds, {"api": proc.pid})
            bench.stop_baseline()
        roles: dict[str, int] = {}
        if not args.no_worker:
            roles["worker"] = bench.start_worker().pid
        api = await bench.start_api()
        roles["api"] = api.pid
        await bench.wait_projections(0 if args.no_worker else 120)
        for key in wanted:
            if key in ops:
                measure(bench, bench.api_port, ops[key], args.seconds, roles)
                await bench.wait_projections(0 if args.no_worker else 60)
    finally:
        await bench.teardown()


def main() -> None:
    p = argparse.ArgumentParser(prog="bench.cpusplit", description=__doc__)
    p.add_argument("--ops", default="baseline,raise,message,get_one,list,keyword")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--tickets", type=int, default=20_000)
    p.add_argument(
        "--no-worker", action="store_true", help="no projections: the command side alone"
    )
    p.add_argument("--out", default="/tmp/ticketing-cpusplit")
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
