"""Categories: reference data (not event-sourced), managed by admins, read by every API."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg
import msgspec

from domain.errors import InvalidInput
from domain.text import clean_text, optional_text
from services import idempotency as idempotency_store

if TYPE_CHECKING:
    from services.api.deps import Idempotency


class Category(msgspec.Struct, frozen=True):
    id: int
    name: str
    description: str | None
    parent_id: int | None
    created_at: datetime | None = None
    created_by: str | None = None  # None: one of the defaults that migrate seeds


_COLUMNS = "id, name, description, parent_id, created_at, created_by"


async def list_categories(pool: asyncpg.Pool) -> list[Category]:
    rows = await pool.fetch(f"SELECT {_COLUMNS} FROM categories ORDER BY id")
    return [Category(**dict(r)) for r in rows]


async def get_category(pool: asyncpg.Pool, category_id: int) -> Category | None:
    row = await pool.fetchrow(f"SELECT {_COLUMNS} FROM categories WHERE id = $1", category_id)
    return None if row is None else Category(**dict(row))


async def find_by_name(pool: asyncpg.Pool, name: str) -> Category | None:
    """Case-insensitive lookup, as helpdesk clients send the type name as typed."""
    row = await pool.fetchrow(
        f"SELECT {_COLUMNS} FROM categories WHERE lower(name) = lower($1)", name.strip()
    )
    return None if row is None else Category(**dict(row))


async def create_category(
    pool: asyncpg.Pool,
    name: str,
    description: str | None = None,
    parent_id: int | None = None,
    *,
    created_by: str | None = None,
    idempotency: Idempotency | None = None,
) -> Category:
    """Create a category; with ``idempotency`` the key is stored in the same transaction
    (``services.idempotency.KeyTaken`` when a concurrent request with the key won)."""
    name = clean_text(name, "name", min_len=1, max_len=100).strip()
    description = optional_text(description, "description", max_len=2000)
    if parent_id is not None and await get_category(pool, parent_id) is None:
        raise InvalidInput(f"parent category {parent_id} does not exist", field="parent_id")
    async with pool.acquire() as conn, conn.transaction():
        # one creation at a time: names are unique whatever their case (helpdesk_v1 looks
        # a type up case-insensitively, so "Hardware" and "hardware" could not both work)
        await conn.execute("LOCK TABLE categories IN SHARE ROW EXCLUSIVE MODE")
        taken = await conn.fetchval(
            "SELECT name FROM categories WHERE lower(name) = lower($1)", name
        )
        if taken is not None:
            raise InvalidInput(f"a category named {taken!r} already exists", field="name")
        row = await conn.fetchrow(
            "INSERT INTO categories (name, description, parent_id, created_by) "
            f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
            name,
            description,
            parent_id,
            created_by,
        )
        assert row is not None
        if idempotency is not None:
            await idempotency_store.remember(
                conn,
                idempotency.principal,
                idempotency.key,
                idempotency.request_hash,
                {"category_id": row["id"]},
            )
    return Category(**dict(row))
