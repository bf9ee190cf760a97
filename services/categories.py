"""Categories: reference data (not event-sourced), managed by admins, read by every API."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec

from domain.errors import InvalidInput
from domain.text import clean_text, optional_text


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
) -> Category:
    name = clean_text(name, "name", min_len=1, max_len=100).strip()
    description = optional_text(description, "description", max_len=2000)
    if parent_id is not None and await get_category(pool, parent_id) is None:
        raise InvalidInput(f"parent category {parent_id} does not exist", field="parent_id")
    try:
        row = await pool.fetchrow(
            "INSERT INTO categories (name, description, parent_id, created_by) "
            f"VALUES ($1, $2, $3, $4) RETURNING {_COLUMNS}",
            name,
            description,
            parent_id,
            created_by,
        )
    except asyncpg.UniqueViolationError:
        raise InvalidInput(f"a category named {name!r} already exists", field="name") from None
    assert row is not None
    return Category(**dict(row))
