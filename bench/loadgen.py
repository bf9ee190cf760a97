"""One HTTP load generator for baselines and product alike: wrk + Lua, or an asyncio client.

An ``Op`` describes a request with at most one varying part in its path (a ticket id
drawn from a range, or a word drawn from a list). ``run_load`` drives it with a fixed
number of keep-alive connections for a fixed time and returns a ``LoadResult``; wrk is
used when it is on PATH (``TICKETING_BENCH_LOADGEN=asyncio`` forces the fallback).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Op:
    name: str
    method: str
    path: str  # may hold one "{id}" or "{word}"
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    id_range: tuple[int, int] | None = None
    words: tuple[str, ...] = ()

    def render_path(self, rnd: random.Random) -> str:
        if "{id}" in self.path:
            assert self.id_range is not None
            return self.path.replace("{id}", str(rnd.randint(*self.id_range)))
        if "{word}" in self.path:
            return self.path.replace("{word}", rnd.choice(self.words))
        return self.path


@dataclass
class LoadResult:
    op: str
    tool: str
    connections: int
    duration_s: float
    requests: int
    errors: int  # non-2xx/3xx statuses plus socket errors and timeouts
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    extra: dict[str, object] = field(default_factory=dict)


def tool_name() -> str:
    forced = os.environ.get("TICKETING_BENCH_LOADGEN", "").lower()
    if forced == "asyncio":
        return "asyncio"
    return "wrk" if shutil.which("wrk") else "asyncio"


def run_load(
    base_url: str, op: Op, *, connections: int, duration_s: float, threads: int = 2
) -> LoadResult:
    if tool_name() == "wrk":
        return _run_wrk(
            base_url, op, connections=connections, duration_s=duration_s, threads=threads
        )
    return asyncio.run(_run_async(base_url, op, connections=connections, duration_s=duration_s))


# --- wrk ----------------------------------------------------------------------------------


def _lua_str(s: str | bytes) -> str:
    text = s.decode() if isinstance(s, bytes) else s
    level = "=" * 4
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def lua_script(op: Op) -> str:
    headers = ", ".join(f"[ {_lua_str(k)} ] = {_lua_str(v)}" for k, v in op.headers.items())
    body = _lua_str(op.body) if op.body is not None else "nil"
    if "{id}" in op.path:
        assert op.id_range is not None
        pre, post = op.path.split("{id}", 1)
        lo, hi = op.id_range
        varying = f"{_lua_str(pre)} .. math.random({lo}, {hi}) .. {_lua_str(post)}"
    elif "{word}" in op.path:
        pre, post = op.path.split("{word}", 1)
        varying = f"{_lua_str(pre)} .. words[math.random(1, #words)] .. {_lua_str(post)}"
    else:
        varying = _lua_str(op.path)
    words = ", ".join(_lua_str(w) for w in op.words) or '""'
    return f"""
local counter = 0
setup = function(thread)
  counter = counter + 1
  thread:set("seed", counter * 7919 + os.time())
end
local headers = {{ {headers} }}
local body = {body}
words = {{ {words} }}
init = function(args)
  math.randomseed(seed)
end
request = function()
  return wrk.format({_lua_str(op.method)}, {varying}, headers, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests": %d, "duration_us": %d, "status": %d, "connect": %d, '
    .. '"read": %d, "write": %d, "timeout": %d, "p50": %d, "p90": %d, "p99": %d, "max": %d}}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _run_wrk(
    base_url: str, op: Op, *, connections: int, duration_s: float, threads: int
) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / f"{op.name}.lua"
        script.write_text(lua_script(op))
        cmd = [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            base_url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration_s + 60, check=False
        )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    d = json.loads(line.removeprefix("BENCHJSON "))
    dur = d["duration_us"] / 1e6
    errors = d["status"] + d["connect"] + d["read"] + d["write"] + d["timeout"]
    return LoadResult(
        op=op.name,
        tool="wrk",
        connections=connections,
        duration_s=dur,
        requests=d["requests"],
        errors=errors,
        rps=d["requests"] / dur if dur else 0.0,
        p50_ms=d["p50"] / 1000,
        p90_ms=d["p90"] / 1000,
        p99_ms=d["p99"] / 1000,
        max_ms=d["max"] / 1000,
        extra={"non_2xx": d["status"], "socket_errors": errors - d["status"]},
    )


# --- asyncio fallback ----------------------------------------------------------------------


class HttpConnection:
    """A minimal HTTP/1.1 keep-alive client connection (Content-Length or chunked bodies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
            self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        resp_headers: dict[str, str] = {}
        while True:
            raw = await self.reader.readline()
            if raw in (b"\r\n", b"\n", b""):
                break
            k, _, v = raw.decode("latin-1").partition(":")
            resp_headers[k.strip().lower()] = v.strip()
        if "content-length" in resp_headers:
            data = await self.reader.readexactly(int(resp_headers["content-length"]))
        elif resp_headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(parts)
        else:
            data = b""
        if resp_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, resp_headers, data


def _split(base_url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    return u.hostname or "127.0.0.1", u.port or 80


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    idx = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[idx]


async def _run_async(base_url: str, op: Op, *, connections: int, duration_s: float) -> LoadResult:
    host, port = _split(base_url)
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration_s

    async def worker(seed: int) -> None:
        nonlocal errors
        rnd = random.Random(seed)
        conn = HttpConnection(host, port)
        try:
            while time.perf_counter() < stop_at:
                path = op.render_path(rnd)
                t0 = time.perf_counter()
                try:
                    status, _, _ = await conn.request(op.method, path, op.headers, op.body)
                except (ConnectionError, OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    await conn.close()
                    continue
                latencies.append(time.perf_counter() - t0)
                if status >= 400:
                    errors += 1
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(i * 7919 + 1) for i in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    return LoadResult(
        op=op.name,
        tool="asyncio",
        connections=connections,
        duration_s=elapsed,
        requests=len(latencies),
        errors=errors,
        rps=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=percentile(ms, 50),
        p90_ms=percentile(ms, 90),
        p99_ms=percentile(ms, 99),
        max_ms=ms[-1] if ms else 0.0,
    )
