"""Prometheus metrics: request latency by route template, commands by type and outcome,
projection lag and SLA breaches. ``GET /metrics`` takes an admin or auditor token.

Each app has its own registry (several apps in one process, as in tests, never clash).
With several server processes each exposes its own series; Prometheus sums them.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from services.api.auth import allow

log = logging.getLogger("ticketing.api.metrics")

# Litestar appends "; charset=utf-8" to text/* itself; a second one makes the header
# unparseable (Prometheus 3 refuses such a scrape).
METRICS_MEDIA_TYPE = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._command_children: dict[tuple[str, str], Any] = {}
        self.requests = Histogram(
            "ticketing_http_request_duration_seconds",
            "HTTP request latency by method, route template and status",
            ("method", "route", "status"),
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.commands = Counter(
            "ticketing_commands",
            "Commands handled, by command type and outcome (ok, noop, retried, or error kind)",
            ("command", "outcome"),
            registry=self.registry,
        )
        self.projection_lag = Gauge(
            "ticketing_projection_lag_events",
            "How far the slowest projection is behind the event log (as reported by "
            "projections.consistency.projection_lag)",
            registry=self.registry,
        )
        self.projection_lag_ms = Gauge(
            "ticketing_projection_lag_seconds",
            "Age of the oldest event the projections have not applied yet (0 when caught up)",
            registry=self.registry,
        )
        self.sla_breaches = Gauge(
            "ticketing_sla_breaches_total",
            "SLA breaches recorded in the event log, by target (a counter read from the log)",
            ("target",),
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._request_children.get(key)
        if child is None:  # labels() locks and validates: do it once per series, not per request
            child = self.requests.labels(method, route, str(status))
            self._request_children[key] = child
        child.observe(seconds)

    def on_outcome(self, command: str, outcome: str) -> None:
        key = (command, outcome)
        child = self._command_children.get(key)
        if child is None:  # as in observe_request: labels() once per series
            child = self.commands.labels(command, outcome)
            self._command_children[key] = child
        child.inc()

    async def refresh(self, pool: Any) -> None:
        """Read the gauges that live in the database at scrape time."""
        try:
            from projections.consistency import projection_lag

            events, ms = lag_of(await projection_lag(pool))
            self.projection_lag.set(events)
            self.projection_lag_ms.set(ms / 1000)
        except Exception:  # metrics must answer even when a part is missing
            log.debug("projection lag unavailable", exc_info=True)
        try:
            rows = await pool.fetch(
                "SELECT data->>'target' AS target, count(*) AS n FROM events "
                "WHERE type = 'SlaBreached' GROUP BY 1"
            )
            seen = {r["target"]: r["n"] for r in rows}
            for target in ("first_response", "resolution"):
                self.sla_breaches.labels(target).set(seen.get(target, 0))
        except Exception:
            log.debug("SLA breach count unavailable", exc_info=True)


def lag_of(value: Any) -> tuple[float, float]:
    """(events behind, ms behind) from projections.consistency.projection_lag's answer."""
    if isinstance(value, dict):
        return float(value.get("events_behind") or 0), float(value.get("ms_behind") or 0)
    if isinstance(value, int | float):
        return float(value), 0.0
    return 0.0, 0.0


@get(
    "/metrics",
    opt=allow("admin", "auditor"),
    include_in_schema=True,
    tags=["operations"],
    summary="Prometheus metrics (admin or auditor)",
    media_type=METRICS_MEDIA_TYPE,
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    metrics: ApiMetrics = request.app.state.metrics
    await metrics.refresh(request.app.state.pool)
    return Response(
        content=generate_latest(metrics.registry), media_type=METRICS_MEDIA_TYPE, status_code=200
    )
