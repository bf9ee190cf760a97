"""Ticket messages: every MessagePosted with its visibility and attachments."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from projections.fold import MESSAGE_COLUMNS

if TYPE_CHECKING:
    from projections.runner import Batch

NAME = "ticket_messages"

_TYPES = (
    "bigint",
    "bigint",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",  # attachments as a JSON array (unnest cannot take ragged text[][])
    "text",
    "timestamptz",
    "bigint",
)


def insert_cte(s: str, first_param: int) -> str:
    """CTEs ``msg_in`` (the batch's messages, also read by the search fold) and ``msg_ins``."""
    cols = ", ".join(MESSAGE_COLUMNS)
    arrays = ", ".join(f"${first_param + i}::{t}[]" for i, t in enumerate(_TYPES))
    values = ", ".join(
        "ARRAY(SELECT json_array_elements_text(u.attachments::json))::text[]"
        if c == "attachments"
        else "u.external_attachments::json"
        if c == "external_attachments"
        else f"u.{c}"
        for c in MESSAGE_COLUMNS
    )
    return (
        f"msg_in AS (SELECT * FROM unnest({arrays}) AS u({cols})), "
        f"msg_ins AS (INSERT INTO {s}.ticket_messages ({cols}) SELECT {values} FROM msg_in u)"
    )


def message_arrays(batch: Batch) -> list[list[Any]]:
    if not batch.messages:
        return [[] for _ in MESSAGE_COLUMNS]
    cols = [list(col) for col in zip(*batch.messages, strict=True)]
    i = MESSAGE_COLUMNS.index("attachments")
    cols[i] = [msgspec.json.encode(a).decode() for a in cols[i]]
    return cols
