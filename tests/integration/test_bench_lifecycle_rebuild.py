"""The bench's second rebuild figure: a log of whole ticket lifecycles, in a scratch
database of its own, measured against its own raw read and dropped afterwards."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from bench import report
from bench.run import Bench, tool_bench

SCRATCH = "SELECT datname FROM pg_database WHERE datname LIKE 'ticketing\\_bench\\_%'"


async def _scratch_databases(admin_dsn: str) -> set[str]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        return {r["datname"] for r in await conn.fetch(SCRATCH)}
    finally:
        await conn.close()


def _bench(servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TICKETING_DATABASE_URL", servers.admin_dsn)
    monkeypatch.setenv("TICKETING_REDIS_URL", servers.redis_url)
    return tool_bench("lifecycles", tmp_path, tickets=900)


async def test_the_lifecycle_rebuild_replays_its_own_log_and_drops_its_database(
    servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    before = await _scratch_databases(servers.admin_dsn)
    bench = _bench(servers, tmp_path, monkeypatch)
    try:
        await bench.setup()
        await bench.rebuild_lifecycles()
        life = bench.r["rebuild_lifecycles"]
        # about nine events a ticket, every one read and replayed
        assert life["events"] >= 900
        assert life["events"] / 12 < life["tickets"] < life["events"] / 5
        raw = life["raw_read_decode"]
        assert raw["events"] == life["events"]
        # read before and after the rebuild; judged against the faster read
        assert len(raw["reads_s"]) == 2 and raw["seconds"] == min(raw["reads_s"])
        assert life["stats"]["events"] == life["events"]
        assert life["events_per_s"] > 0 and life["raw_read_decode"]["events_per_s"] > 0
        # gone as soon as measured; the run's own database was not written to
        assert await _scratch_databases(servers.admin_dsn) == before | {bench.db_name}
        assert await _count_events(bench.dsn) == 0
    finally:
        await bench.teardown()
    assert await _scratch_databases(servers.admin_dsn) == before

    targets = {t["target"]: t for t in report.evaluate_targets(bench.r)}
    life_target = targets["rebuild >= 0.3 x raw read-and-decode (whole ticket lifecycles)"]
    ratio = life["events_per_s"] / life["raw_read_decode"]["events_per_s"]
    assert life_target["value"] == ratio
    assert life_target["status"] == ("met" if ratio >= 0.3 else "missed")
    assert (
        targets["rebuild >= 0.3 x raw read-and-decode (raised tickets only, 1 event a ticket)"][
            "status"
        ]
        == "not measured"
    )
    assert f"| projections rebuild of the same | {life['events_per_s']:,.0f} events/s" in (
        report.markdown(bench.r)
    )


async def test_a_failed_lifecycle_rebuild_leaves_no_database_behind(
    servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    import projections.rebuild

    async def broken(dsn: str) -> None:
        raise RuntimeError("rebuild broke")

    before = await _scratch_databases(servers.admin_dsn)
    bench = _bench(servers, tmp_path, monkeypatch)
    monkeypatch.setattr(projections.rebuild, "rebuild_all", broken)
    try:
        await bench.setup()
        with pytest.raises(RuntimeError, match="rebuild broke"):
            await bench.rebuild_lifecycles()
        assert f"{bench.db_name}_lifecycles" in await _scratch_databases(servers.admin_dsn)
    finally:
        await bench.teardown()
    assert await _scratch_databases(servers.admin_dsn) == before
    assert "rebuild_lifecycles" not in bench.r


async def _count_events(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def test_the_seeded_log_is_read_again_after_the_rebuild_and_the_faster_read_kept(
    servers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TICKETING_DATABASE_URL", servers.admin_dsn)
    monkeypatch.setenv("TICKETING_REDIS_URL", servers.redis_url)
    bench = tool_bench("reads", tmp_path, tickets=400)
    try:
        await bench.setup()
        await bench.seed()
        await bench.raw_read_decode()
        assert len(bench.r["raw_read_decode"]["reads_s"]) == 1
        await bench.rebuild()
        await bench.raw_read_again()
        raw = bench.r["raw_read_decode"]
        assert raw["events"] == bench.r["rebuild"]["events"] == 400
        assert len(raw["reads_s"]) == 2 and raw["seconds"] == min(raw["reads_s"])
        assert raw["events_per_s"] == pytest.approx(400 / raw["seconds"], rel=0.1)  # unrounded
    finally:
        await bench.teardown()
