"""Idempotency-Key: what a key's first request left, for every request that takes one.

Commands store their key with their events (``EventStore.append``, naming the stream), or
alone when they change nothing (``remember``: a repeat then changes nothing either, and the
key cannot be reused for another request); a category or an upload stores it with what it
created (``remember``); all in the one
``idempotency_keys`` table, one key space per principal. ``find`` is the one lookup: a
repeat within 24 hours with the same request finds the first's result; with another
request it is refused; an expired key is forgotten.
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


class First(msgspec.Struct, frozen=True):
    """What the key's first request stored: its result, and its stream for a command."""

    result: dict[str, Any]
    stream_id: int | None


async def find(
    pool: asyncpg.Pool,
    principal: str,
    key: str,
    request_hash: bytes,
    *,
    now: datetime | None = None,
) -> First | None:
    """The key's first request (None: the key is new, or expired and now forgotten)."""
    row = await pool.fetchrow(
        "SELECT request_hash, stream_id, result, created_at FROM idempotency_keys "
        "WHERE principal = $1 AND key = $2",
        principal,
        key,
    )
    if row is None:
        return None
    if row["created_at"] < (now or datetime.now(UTC)) - IDEMPOTENCY_TTL:
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
    return First(result=msgspec.json.decode(row["result"]), stream_id=row["stream_id"])


async def remember(
    conn: asyncpg.Connection,
    principal: str,
    key: str,
    request_hash: bytes,
    result: dict[str, Any],
    *,
    stream_id: int | None = None,
) -> None:
    """Store the key with ``result`` in the caller's transaction (KeyTaken on a race);
    ``stream_id`` for a command that appended nothing (its events would have named it)."""
    try:
        async with conn.transaction():  # a savepoint: the race leaves the caller's intact
            await conn.execute(
                "INSERT INTO idempotency_keys (principal, key, request_hash, result, stream_id) "
                "VALUES ($1, $2, $3, $4, $5)",
                principal,
                key,
                request_hash,
                msgspec.json.encode(result).decode(),
                stream_id,
            )
    except asyncpg.UniqueViolationError:
        raise KeyTaken() from None
