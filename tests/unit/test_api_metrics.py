"""The API's Prometheus series count every observation, cached label children included."""

from __future__ import annotations

import pytest

from services.api.metrics import ApiMetrics


def _value(metrics: ApiMetrics, name: str, labels: dict[str, str]) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_command_outcomes_are_counted_per_series() -> None:
    m = ApiMetrics()
    for _ in range(3):
        m.on_outcome("PostMessage", "ok")
    m.on_outcome("PostMessage", "conflict")
    m.on_outcome("RaiseTicket", "ok")
    ok = {"command": "PostMessage", "outcome": "ok"}
    assert _value(m, "ticketing_commands_total", ok) == 3
    conflict = {"command": "PostMessage", "outcome": "conflict"}
    assert _value(m, "ticketing_commands_total", conflict) == 1
    assert _value(m, "ticketing_commands_total", {"command": "RaiseTicket", "outcome": "ok"}) == 1


def test_request_durations_are_observed_per_series() -> None:
    m = ApiMetrics()
    m.observe_request("POST", "/v1/tickets", 201, 0.004)
    m.observe_request("POST", "/v1/tickets", 201, 0.2)
    m.observe_request("GET", "/v1/tickets", 200, 0.001)
    post = {"method": "POST", "route": "/v1/tickets", "status": "201"}
    assert _value(m, "ticketing_http_request_duration_seconds_count", post) == 2
    assert _value(m, "ticketing_http_request_duration_seconds_sum", post) == pytest.approx(0.204)
    get = {"method": "GET", "route": "/v1/tickets", "status": "200"}
    assert _value(m, "ticketing_http_request_duration_seconds_count", get) == 1
