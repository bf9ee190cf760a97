"""Ticket logs: one row per event (action, actor, when), keyed by global position."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from projections.fold import LOG_COLUMNS

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_logs"

_TYPES = (
    "bigint",
    "bigint",
    "int",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
)


def insert_cte(s: str, first_param: int) -> str:
    """CTE ``log_ins``: one row per event of the batch."""
    cols = ", ".join(LOG_COLUMNS)
    arrays = ", ".join(f"${first_param + i}::{t}[]" for i, t in enumerate(_TYPES))
    values = ", ".join("u.details::json" if c == "details" else f"u.{c}" for c in LOG_COLUMNS)
    return (
        f"log_ins AS (INSERT INTO {s}.ticket_logs ({cols}) "
        f"SELECT {values} FROM unnest({arrays}) AS u({cols}))"
    )


def log_arrays(batch: Batch) -> list[list[Any]]:
    if not batch.logs:
        return [[] for _ in LOG_COLUMNS]
    return [list(col) for col in zip(*batch.logs, strict=True)]
