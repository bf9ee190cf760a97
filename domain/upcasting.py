"""Upcasters: pure functions that lift an old stored payload to the current schema.

An upcaster for (type, schema N) returns the payload as schema N+1; ``upcast`` chains
them until the event's current SCHEMA, so stored events are never rewritten.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from domain.events import EVENT_TYPES
from domain.sla import DEFAULT_SLA_TARGETS, parse_targets

Payload = dict[str, Any]


def _ticket_raised_v1_to_v2(data: Payload) -> Payload:
    """v1 kept the requester flat and had no SLA targets (they came from config at read).

    v2 records the requester as an actor and the targets in force when it was raised;
    a v1 event gets the default targets for its priority, as the v1 service applied.
    """
    out = {k: v for k, v in data.items() if k not in ("requester_id", "requester_name")}
    out["requester"] = {
        "id": str(data["requester_id"]),
        "role": "customer",
        "name": data.get("requester_name"),
    }
    targets = parse_targets(DEFAULT_SLA_TARGETS)[data.get("priority", "medium")]
    out["sla"] = {
        "first_response_s": targets.first_response_s,
        "resolution_s": targets.resolution_s,
    }
    out.setdefault("attachments", [])
    return out


UPCASTERS: dict[tuple[str, int], Callable[[Payload], Payload]] = {
    ("TicketRaised", 1): _ticket_raised_v1_to_v2,
}


def upcast(type_name: str, schema: int, data: Payload) -> Payload:
    current = EVENT_TYPES[type_name].SCHEMA
    while schema < current:
        data = UPCASTERS[(type_name, schema)](data)
        schema += 1
    data["type"] = type_name
    return data
