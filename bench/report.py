"""Turn a benchmark run's figures into report.json, report.md and latency.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HTTP_PAIRS = (
    # (operation, baseline, minimum req/s ratio, maximum p99 ratio or None)
    ("raise", "baseline_insert", 0.6, 1.5),
    ("message", "baseline_insert", 0.6, 1.5),
    ("get_one", "baseline_select", 0.7, None),
    ("list", "baseline_select", 0.5, None),
    ("keyword", "baseline_select", 0.5, None),
)

# Shown next to their baselines, without a target of their own: the list and keyword
# queries with the API's page cache skipped (Cache-Control: no-cache).
HTTP_EXTRA = (
    ("list_uncached", "baseline_select"),
    ("keyword_uncached", "baseline_select"),
)


# The rebuild's two targets (run.py rebuild_lifecycles), and the log each is named by in
# the history line.
REBUILD_RAISED = "rebuild >= 0.3 x raw read-and-decode (raised tickets only, 1 event a ticket)"
REBUILD_LIFECYCLES = "rebuild >= 0.3 x raw read-and-decode (whole ticket lifecycles)"
REBUILD_LOGS = {REBUILD_RAISED: "raised only", REBUILD_LIFECYCLES: "lifecycles"}


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or not b:
        return None
    return a / b


def baseline_for(http: dict[str, Any], op: str, base: str) -> Any:
    """The baseline figures ``op`` is compared with: its pair (the baseline measured just
    before it), else the baselines phase's."""
    p = http.get(op) or {}
    paired = p.get("paired_baseline")
    if paired and paired.get("name") == base:
        return dict(paired)
    return http.get(base)


def evaluate_targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issue 8 with its figure, limit, ratio and met/missed."""
    out: list[dict[str, Any]] = []
    http = r.get("http", {})

    def add(name: str, value: float | None, limit: float, unit: str, higher: bool) -> None:
        if value is None:
            out.append(
                {
                    "target": name,
                    "value": None,
                    "limit": limit,
                    "unit": unit,
                    "ratio": None,
                    "status": "not measured",
                }
            )
            return
        met = value >= limit if higher else value <= limit
        out.append(
            {
                "target": name,
                "value": value,
                "limit": limit,
                "unit": unit,
                "ratio": value / limit if limit else None,
                "status": "met" if met else "missed",
            }
        )

    for op, base, min_rps, max_p99 in HTTP_PAIRS:
        p, b = http.get(op), baseline_for(http, op, base)
        rps_ratio = _ratio(p and p["rps"], b and b["rps"])
        add(f"{op} req/s >= {min_rps} x {base}", rps_ratio, min_rps, "x", True)
        if max_p99 is not None:
            p99_ratio = _ratio(p and p["p99_ms"], b and b["p99_ms"])
            add(f"{op} p99 <= {max_p99} x {base} p99", p99_ratio, max_p99, "x", False)
    lag = r.get("projection_lag") or {}
    add("projection lag p99 at half load <= 100 ms", lag.get("p99_ms"), 100.0, "ms", False)
    # Two logs (run.py rebuild_lifecycles): the seeded one, raised tickets only (every
    # event a ticket to write out: the worst case), and one of whole ticket lifecycles.
    rebuild, raw = r.get("rebuild") or {}, r.get("raw_read_decode") or {}
    life = r.get("rebuild_lifecycles") or {}
    life_raw = life.get("raw_read_decode") or {}
    add(
        REBUILD_RAISED, _ratio(rebuild.get("events_per_s"), raw.get("events_per_s")), 0.3, "x", True
    )
    add(
        REBUILD_LIFECYCLES,
        _ratio(life.get("events_per_s"), life_raw.get("events_per_s")),
        0.3,
        "x",
        True,
    )
    kw = r.get("keyword_latency") or {}
    add(
        f"keyword list over {_f(kw.get('tickets'))} tickets p99 <= 50 ms",
        kw.get("p99_ms"),
        50.0,
        "ms",
        False,
    )
    sla = r.get("sla_sweep") or {}
    add(
        f"SLA sweep over {_f(sla.get('open_tickets'))} open tickets <= 2 s",
        sla.get("seconds"),
        2.0,
        "s",
        False,
    )
    rss = r.get("rss") or {}
    add(
        "API RSS under load <= 150 MiB per worker process",
        rss.get("api_max_worker_mib"),
        150.0,
        "MiB",
        False,
    )
    return out


def markdown(r: dict[str, Any]) -> str:
    meta = r.get("meta", {})
    lines = [
        f"# Benchmark {meta.get('started_at', '')} ({meta.get('mode', '')})",
        "",
        f"Machine: {meta.get('machine', {}).get('summary', '?')}. "
        f"Load generator: **{meta.get('loadgen', '?')}**, {meta.get('connections')} connections, "
        f"{meta.get('http_seconds')} s per operation. Database: {meta.get('database', '?')}. "
        f"API: {meta.get('api_workers')} worker process(es); rate limit off for the run. "
        f"Load average (1/5/15 min) at start {meta.get('load_average_at_start')}, "
        f"at end {meta.get('load_average_at_end')}: other work on the machine skews "
        "absolute figures; the ratios are measured side by side: each operation's "
        "baseline columns are its pair, the baseline measured again just before it "
        f"(in {meta.get('config', {}).get('rounds', 1)} alternating round(s) over the "
        "operation's time: req/s over all rounds, each percentile the median of the "
        "rounds'; the first two rows are the baselines' own phase).",
        "",
        f"Reproduce: `{meta.get('command', 'ticketing bench')}`",
        "",
        "## HTTP operations at 64 connections, next to their baselines",
        "",
        "| operation | req/s | p50 ms | p99 ms | errors | baseline | baseline req/s | "
        "baseline p99 ms | req/s ratio | p99 ratio |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    http = r.get("http", {})
    for name in ("baseline_insert", "baseline_select"):
        b = http.get(name)
        if b:
            lines.append(
                f"| {name} | {_f(b['rps'], 0)} | {_f(b['p50_ms'], 2)} | {_f(b['p99_ms'], 2)} | "
                f"{_f(b['errors'])} | - | - | - | 1.00 | 1.00 |"
            )
    for op, base in [(op, base) for op, base, _, _ in HTTP_PAIRS] + list(HTTP_EXTRA):
        p, b = http.get(op), baseline_for(http, op, base)
        if not p and (op, base) in HTTP_EXTRA:
            continue
        if not p:
            lines.append(f"| {op} | not measured | | | | {base} | | | | |")
            continue
        lines.append(
            f"| {op} | {_f(p['rps'], 0)} | {_f(p['p50_ms'], 2)} | {_f(p['p99_ms'], 2)} | "
            f"{_f(p['errors'])} | {base} | {_f(b and b['rps'], 0)} | "
            f"{_f(b and b['p99_ms'], 2)} | {_f(_ratio(p['rps'], b and b['rps']), 2)} | "
            f"{_f(_ratio(p['p99_ms'], b and b['p99_ms']), 2)} |"
        )
    lines += ["", "## Other figures", "", "| figure | value |", "|---|---|"]
    for w, a in (r.get("append_rate") or {}).items():
        lines.append(
            f"| append rate, command service alone, {w} writer(s) | "
            f"{_f(a['events_per_s'], 0)} events/s (p50 {_f(a['p50_ms'], 2)} ms, "
            f"p99 {_f(a['p99_ms'], 2)} ms) |"
        )
    lag = r.get("projection_lag")
    if lag:
        lines.append(
            f"| projection lag at {_f(lag['rate_per_s'], 0)} raises/s (half of max) | "
            f"p50 {_f(lag['p50_ms'], 1)} ms, p99 {_f(lag['p99_ms'], 1)} ms, "
            f"max {_f(lag['max_ms'], 1)} ms over {_f(lag['samples'])} tickets |"
        )
    raw, reb = r.get("raw_read_decode"), r.get("rebuild")
    if raw:
        lines.append(
            f"| raw read-and-decode of {_f(raw['events'])} events | "
            f"{_f(raw['events_per_s'], 0)} events/s ({_reads(raw)}) |"
        )
    if reb:
        lines.append(
            f"| projections rebuild of {_f(reb['events'])} events | "
            f"{_f(reb['events_per_s'], 0)} events/s ({_f(reb['seconds'], 1)} s) |"
        )
    life = r.get("rebuild_lifecycles")
    if life:
        what = f"{_f(life['events'])} events of {_f(life['tickets'])} whole ticket lifecycles"
        lines.append(
            f"| raw read-and-decode of {what} | "
            f"{_f(life['raw_read_decode']['events_per_s'], 0)} events/s "
            f"({_reads(life['raw_read_decode'])}) |"
        )
        lines.append(
            f"| projections rebuild of the same | "
            f"{_f(life['events_per_s'], 0)} events/s ({_f(life['seconds'], 1)} s) |"
        )
    kw = r.get("keyword_latency")
    if kw:
        lines.append(
            f"| keyword list over {_f(kw['tickets'])} tickets, 1 connection | "
            f"p50 {_f(kw['p50_ms'], 2)} ms, p99 {_f(kw['p99_ms'], 2)} ms |"
        )
    sla = r.get("sla_sweep")
    if sla:
        lines.append(
            f"| SLA sweep over {_f(sla['open_tickets'])} open tickets | {_f(sla['seconds'], 2)} s "
            f"({_f(sla['breaches'])} breaches recorded) |"
        )
    au = r.get("audit_verify")
    if au:
        lines.append(
            f"| audit verify over {_f(au['events'])} events | {_f(au['seconds'], 1)} s "
            f"(chains {_f(au['chain_seconds'], 1)} s, projections "
            f"{_f(au['projection_seconds'], 1)} s; {au['result']}) |"
        )
    rss = r.get("rss")
    if rss:
        lines.append(
            f"| RSS under load | API worker max {_f(rss.get('api_max_worker_mib'), 0)} MiB, "
            f"worker max {_f(rss.get('worker_max_mib'), 0)} MiB, baseline app max "
            f"{_f(rss.get('baseline_max_mib'), 0)} MiB |"
        )
    lines += ["", "## Targets", "", "| target | value | limit | met? |", "|---|---:|---:|---|"]
    for t in r.get("targets", []):
        # a value that rounds to its limit is shown with a digit more, so that a miss by
        # 0.001 does not read as the limit itself
        digits = 2 if t["value"] is None or _f(t["value"], 2) != _f(t["limit"], 2) else 3
        lines.append(
            f"| {t['target']} | {_f(t['value'], digits)} "
            f"{t['unit'] if t['value'] is not None else ''}"
            f" | {_f(t['limit'], 2)} {t['unit']} | {t['status']} |"
        )
    phases = r.get("phases", [])
    bad = [p for p in phases if p["status"] != "ok"]
    if bad:
        lines += ["", "## Phases not completed", ""]
        lines += [f"- {p['name']}: {p['status']} — {p.get('detail', '')}" for p in bad]
    hist = r.get("history", [])
    if hist:
        lines += ["", "## History", "", "| run | mode | note | figures |", "|---|---|---|---|"]
        for h in hist:
            lines.append(
                f"| {h.get('run', '')} | {h.get('mode', '')} | {h.get('note', '')} | "
                f"{h.get('figures', '')} |"
            )
    return "\n".join(lines) + "\n"


def chart(r: dict[str, Any], path: Path) -> bool:
    """Latency percentiles per operation (and req/s) as a PNG; False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    http = r.get("http", {})
    names = [
        n
        for n in (
            "baseline_insert",
            "raise",
            "message",
            "baseline_select",
            "get_one",
            "list",
            "list_uncached",
            "keyword",
            "keyword_uncached",
        )
        if n in http
    ]
    if not names:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.27
    xs = range(len(names))
    for i, (key, label) in enumerate((("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"))):
        ax1.bar(
            [x + (i - 1) * width for x in xs], [http[n][key] for n in names], width, label=label
        )
    ax1.set_xticks(list(xs), names, rotation=30, ha="right")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(f"Latency at {r.get('meta', {}).get('connections')} connections")
    ax1.legend()
    colors = ["#888888" if n.startswith("baseline") else "#1f77b4" for n in names]
    ax2.bar(list(xs), [http[n]["rps"] for n in names], color=colors)
    ax2.set_xticks(list(xs), names, rotation=30, ha="right")
    ax2.set_ylabel("requests/s")
    ax2.set_title("Throughput (grey: baselines)")
    fig.suptitle(
        f"ticketing bench {r.get('meta', {}).get('started_at', '')} "
        f"({r.get('meta', {}).get('mode', '')}, {r.get('meta', {}).get('loadgen')})"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _reads(raw: dict[str, Any]) -> str:
    """The raw read's time, and the reads it is the fastest of (bench/rawread.py figures)."""
    reads = raw.get("reads_s") or []
    if len(reads) < 2:
        return f"{_f(raw['seconds'], 1)} s"
    return f"{_f(raw['seconds'], 1)} s, the faster of {' and '.join(_f(x, 1) for x in reads)} s"


def history_entry(r: dict[str, Any], run: str) -> dict[str, Any]:
    """A one-line summary of a run for the history section."""
    http = r.get("http", {})
    parts = []
    for op in ("raise", "message", "get_one", "list", "keyword"):
        if op in http:
            parts.append(f"{op} {http[op]['rps']:.0f}/s p99 {http[op]['p99_ms']:.1f}ms")
    lag = r.get("projection_lag")
    if lag:
        parts.append(f"lag p99 {lag['p99_ms']:.0f}ms")
    for t in r.get("targets", []):
        if t["target"] in REBUILD_LOGS and t["value"] is not None:
            parts.append(f"rebuild {t['value']:.2f}x raw ({REBUILD_LOGS[t['target']]})")
    met = sum(1 for t in r.get("targets", []) if t["status"] == "met")
    total = len(r.get("targets", []))
    return {
        "run": run,
        "mode": r.get("meta", {}).get("mode"),
        "note": r.get("note", ""),
        "figures": "; ".join(parts) + f"; targets met {met}/{total}",
    }


def write_all(r: dict[str, Any], out: Path, history_file: Path | None) -> None:
    r["targets"] = evaluate_targets(r)
    if history_file is not None:
        hist: list[dict[str, Any]] = []
        if history_file.is_file():
            hist = json.loads(history_file.read_text())
        hist.append(history_entry(r, out.name))
        history_file.write_text(json.dumps(hist, indent=2) + "\n")
        r["history"] = hist
    (out / "report.json").write_text(json.dumps(r, indent=2, default=str) + "\n")
    (out / "report.md").write_text(markdown(r))
    r["chart"] = "latency.png" if chart(r, out / "latency.png") else None
