"""Idempotency-Key for requests that create something other than events.

Commands keep their key with their events (``EventStore.append``); a category or an
attachment keeps it here, in the same ``idempotency_keys`` table (one key space per
principal, whatever the key's request created). A repeat of the key with the same
request within 24 hours finds what the first one created; with another request it is
refused; an expired key is forgotten. ``remember`` runs inside the creating transaction,
so a key is stored exactly when its creation commits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from domain.errors import IdempotencyKeyReused

IDEMPOTENCY_TTL = timedelta(hours=24)


class KeyTaken(Exception):
    """A concurrent request with the same key committed first: replay it."""


async def find(
    pool: asyncpg.Pool, principal: str, key: str, request_hash: bytes
) -> dict[str, Any] | None:
    """What the key's first request created (its ``remember``ed result), or None."""
    row = await pool.fetchrow(
        "SELECT request_hash, result, created_at FROM idempotency_keys "
        "WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if row is None:
        return None
    if row["created_at"] < datetime.now(UTC) - IDEMPOTENCY_TTL:
        await pool.execute(
            "DELETE FROM idempotency_keys WHERE principal = $1 AND key = $2 AND created_at = $3",
            principal,
            key,
            row["created_at"],
        )
        return None
    if bytes(row["request_hash"]) != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request"
        )
    result: dict[str, Any] = msgspec.json.decode(row["result"])
    return result


async def remember(
    conn: asyncpg.Connection,
    principal: str,
    key: str,
    request_hash: bytes,
    result: dict[str, Any],
) -> None:
    """Store the key with ``result`` in the caller's transaction (KeyTaken on a race)."""
    try:
        async with conn.transaction():  # a savepoint: the race leaves the caller's intact
            await conn.execute(
                "INSERT INTO idempotency_keys (principal, key, request_hash, result) "
                "VALUES ($1, $2, $3, $4)",
                principal,
                key,
                request_hash,
                msgspec.json.encode(result).decode(),
            )
    except asyncpg.UniqueViolationError:
        raise KeyTaken() from None
