"""The bench report: each operation's ratio is taken against its paired baseline."""

from __future__ import annotations

from typing import Any

from bench import report


def _fig(rps: float, p99: float) -> dict[str, Any]:
    return {"rps": float(rps), "p50_ms": p99 / 4, "p99_ms": float(p99), "errors": 0}


def _targets(http: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in report.evaluate_targets({"http": http})}


def test_a_ratio_uses_the_baseline_measured_just_before_the_operation() -> None:
    http = {
        "baseline_insert": _fig(4000, 100),  # the baselines' own phase, minutes earlier
        "raise": {
            **_fig(1500, 120),
            "paired_baseline": {"name": "baseline_insert", **_fig(2000, 100)},
        },
    }
    t = _targets(http)
    assert t["raise req/s >= 0.6 x baseline_insert"]["value"] == 0.75
    assert t["raise req/s >= 0.6 x baseline_insert"]["status"] == "met"
    assert t["raise p99 <= 1.5 x baseline_insert p99"]["value"] == 1.2
    # the table shows the pair in the baseline columns
    assert (
        "| raise | 1,500 | 30.00 | 120.00 | 0 | baseline_insert | 2,000 | 100.00 | 0.75 | 1.20 |"
        in report.markdown({"http": http})
    )


def test_without_a_pair_the_baselines_phase_is_used() -> None:
    http = {"baseline_select": _fig(4000, 50), "get_one": _fig(2000, 60)}
    assert _targets(http)["get_one req/s >= 0.7 x baseline_select"]["value"] == 0.5
    assert _targets(http)["get_one req/s >= 0.7 x baseline_select"]["status"] == "missed"


def test_a_pair_of_another_baseline_is_not_taken() -> None:
    http = {
        "baseline_select": _fig(4000, 50),
        "get_one": {
            **_fig(2000, 60),
            "paired_baseline": {"name": "baseline_insert", **_fig(1000, 10)},
        },
    }
    assert _targets(http)["get_one req/s >= 0.7 x baseline_select"]["value"] == 0.5


def test_rounds_merge_into_one_figure() -> None:
    from bench.run import merge_rounds

    rounds = [
        {**_fig(1000, 100), "requests": 5000, "duration_s": 5.0, "p90_ms": 50.0, "max_ms": 300.0},
        {**_fig(3000, 40), "requests": 15000, "duration_s": 5.0, "p90_ms": 20.0, "max_ms": 90.0},
        {**_fig(2000, 60), "requests": 10000, "duration_s": 5.0, "p90_ms": 30.0, "max_ms": 120.0},
    ]
    merged = merge_rounds(rounds)
    assert merged["requests"] == 30000 and merged["rps"] == 2000.0
    assert merged["p99_ms"] == 60.0 and merged["p90_ms"] == 30.0 and merged["max_ms"] == 300.0
    assert [r["rps"] for r in merged["rounds"]] == [1000.0, 3000.0, 2000.0]
    assert merge_rounds(rounds[:1]) == rounds[0]


def test_each_rebuild_is_judged_against_the_raw_read_of_its_own_log() -> None:
    r: dict[str, Any] = {
        "http": {},
        "raw_read_decode": {"events": 1000, "seconds": 0.01, "events_per_s": 100_000.0},
        "rebuild": {"events": 1000, "seconds": 0.05, "events_per_s": 20_000.0},
        "rebuild_lifecycles": {
            "events": 1000,
            "tickets": 110,
            "seconds": 1.0,
            "events_per_s": 49_000.0,
            "raw_read_decode": {
                "events": 1000,
                "seconds": 0.2,
                "events_per_s": 140_000.0,
                "reads_s": [0.3, 0.2],
            },
        },
    }
    t = {x["target"]: x for x in report.evaluate_targets(r)}
    raised = t["rebuild >= 0.3 x raw read-and-decode (raised tickets only, 1 event a ticket)"]
    assert (raised["value"], raised["status"]) == (0.2, "missed")
    life = t["rebuild >= 0.3 x raw read-and-decode (whole ticket lifecycles)"]
    assert (life["value"], life["status"]) == (0.35, "met")
    r["targets"] = list(t.values())
    figures = report.history_entry(r, "run")["figures"]
    assert "rebuild 0.20x raw (raised only); rebuild 0.35x raw (lifecycles)" in figures
    table = report.markdown(r)
    assert (
        "| raw read-and-decode of 1,000 events of 110 whole ticket lifecycles | 140,000 events/s"
        " (0.2 s, the faster of 0.3 and 0.2 s) |"
    ) in table
    assert "| raw read-and-decode of 1,000 events | 100,000 events/s (0.0 s) |" in table


def test_of_several_raw_reads_the_fastest_is_the_figure() -> None:
    from bench.rawread import figures

    f = figures(1000, [0.5, 0.25, 0.4])
    assert (f["seconds"], f["events_per_s"], f["reads_s"]) == (0.25, 4000.0, [0.5, 0.25, 0.4])


def test_a_value_that_rounds_to_its_limit_shows_a_digit_more() -> None:
    http = {
        "message": {
            **_fig(599, 10),
            "paired_baseline": {"name": "baseline_insert", **_fig(1000, 100)},
        },
    }
    table = report.markdown({"http": http, "targets": report.evaluate_targets({"http": http})})
    assert "| message req/s >= 0.6 x baseline_insert | 0.599 x | 0.60 x | missed |" in table
    assert "| message p99 <= 1.5 x baseline_insert p99 | 0.10 x | 1.50 x | met |" in table


def test_wal_records_are_summed_by_relation_record_type_and_full_page_image() -> None:
    from bench.walstat import summarize

    lines = [
        "rmgr: Heap        len (rec/tot):     54/  7994, tx:  1, lsn: 0/01, prev 0/00, desc: "
        "LOCK off 3: xid 9, blkref #0: rel 1663/5/16384 blk 7 FPW",
        "rmgr: Heap        len (rec/tot):     72/    72, tx:  1, lsn: 0/02, prev 0/01, desc: "
        "HOT_UPDATE off 3 xmax 9, blkref #0: rel 1663/5/16384 blk 7",
        "rmgr: Btree       len (rec/tot):     64/  8000, tx:  1, lsn: 0/03, prev 0/02, desc: "
        "INSERT_LEAF off 2, blkref #0: rel 1663/5/99 blk 1 FPW",
        "rmgr: Transaction len (rec/tot):     34/    34, tx:  1, lsn: 0/04, prev 0/03, desc: "
        "COMMIT 2026-12-08",
        "pg_waldump: error: error in WAL record at 0/05",
    ]
    s = summarize(lines, {16384: "ticket_summaries"})
    assert s.bytes_by_relation == {"ticket_summaries": 8066, "99": 8000, "-": 34}
    assert s.images_by_relation == {"ticket_summaries": 1, "99": 1}
    assert s.bytes_by_record["Heap LOCK"] == 7994 and s.bytes_by_record["Btree INSERT_LEAF"] == 8000
    assert s.total == 16100
