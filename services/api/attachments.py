"""Attachments: multipart upload, content-addressed storage (sha256), guarded download.

A download is allowed to the uploader, and to whoever may see a ticket the attachment
is on: staff and auditors for any ticket, a customer for a ticket they requested
(and, for a message's attachment, only if the message is public).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.exceptions import HTTPException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath

from domain.errors import Forbidden, InvalidInput
from domain.events import Actor
from domain.text import clean_text
from services import idempotency as idempotency_store
from services.api.deps import Idempotency, consistent, idempotency_of, pool_of
from services.api.native import _COMMON, READ_ERRORS, _problem, problem_documented
from services.idempotency import KeyTaken
from services.settings import Settings

CHUNK = 256 * 1024
MULTIPART_OVERHEAD = 64 * 1024


class PayloadTooLarge(HTTPException):
    status_code = 413


@dataclass
class UploadForm:
    file: UploadFile


class AttachmentOut(msgspec.Struct):
    id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    created_at: datetime


def _user(request: Request[Any, Any, Any]) -> Actor:
    user = request.scope.get("user")
    assert isinstance(user, Actor)
    return user


async def _store(
    request: Request[Any, Any, Any],
    pool: asyncpg.Pool,
    upload: UploadFile,
    actor: Actor,
    limit: int,
) -> AttachmentOut:
    digest = hashlib.sha256()
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the file is larger than the limit of {limit} bytes")
        digest.update(chunk)
        parts.append(chunk)
    if size == 0:
        raise InvalidInput("the file is empty", field="file")
    content = b"".join(parts)
    sha = digest.hexdigest()
    filename = clean_text(
        (upload.filename or "attachment").replace("/", "_").replace("\\", "_")[:255],
        "filename",
        min_len=1,
        max_len=255,
    )
    content_type = (upload.content_type or "application/octet-stream")[:200]
    # a multipart body differs in its boundary each time: the key covers what it carries
    idem = idempotency_of(request, filename, content_type, sha)
    first = await _replay(pool, idem)
    if first is not None:
        return first
    att_id = uuid.uuid4().hex
    try:
        return await _insert(pool, att_id, sha, content, size, filename, content_type, actor, idem)
    except KeyTaken:  # a concurrent upload with this key stored it
        first = await _replay(pool, idem)
        assert first is not None
        return first


async def _replay(pool: asyncpg.Pool, idem: Idempotency | None) -> AttachmentOut | None:
    """The attachment a repeated Idempotency-Key uploaded (None: the key is new)."""
    if idem is None:
        return None
    first = await idempotency_store.find(pool, idem.principal, idem.key, idem.request_hash)
    if first is None:
        return None
    created = first.result
    row = await pool.fetchrow(
        "SELECT id, filename, content_type, size, sha256, created_at FROM attachments "
        "WHERE id = $1",
        created["attachment_id"],
    )
    assert row is not None
    return AttachmentOut(**dict(row))


async def _insert(
    pool: asyncpg.Pool,
    att_id: str,
    sha: str,
    content: bytes,
    size: int,
    filename: str,
    content_type: str,
    actor: Actor,
    idem: Idempotency | None,
) -> AttachmentOut:
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO attachment_blobs (sha256, content, size) VALUES ($1, $2, $3) "
            "ON CONFLICT (sha256) DO NOTHING",
            sha,
            content,
            size,
        )
        created = await conn.fetchval(
            "INSERT INTO attachments (id, sha256, filename, content_type, size, uploader_id, "
            "uploader_role) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at",
            att_id,
            sha,
            filename,
            content_type,
            size,
            actor.id,
            actor.role,
        )
        if idem is not None:
            await idempotency_store.remember(
                conn, idem.principal, idem.key, idem.request_hash, {"attachment_id": att_id}
            )
    return AttachmentOut(
        id=att_id,
        filename=filename,
        content_type=content_type,
        size=size,
        sha256=sha,
        created_at=created,
    )


def router_for(settings: Settings) -> Router:
    limit = settings.attachment_max_bytes

    @post(
        "/",
        status_code=201,
        summary="Upload an attachment (multipart field `file`)",
        request_max_body_size=limit + MULTIPART_OVERHEAD,
        responses=_COMMON,
    )
    async def upload(
        request: Request[Any, Any, Any],
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
    ) -> Response[AttachmentOut]:
        pool = pool_of(request)
        out = await _store(request, pool, data.file, _user(request), limit)
        return Response(out, status_code=201, headers={"Location": f"/v1/attachments/{out.id}"})

    return Router(
        path="/v1/attachments",
        route_handlers=problem_documented([upload, download]),
        tags=["attachments"],
    )


async def attachment_names(pool: asyncpg.Pool, ids: Sequence[str]) -> dict[str, str]:
    """The uploaded file name of each attachment id (dialects that show names)."""
    if not ids:
        return {}
    rows = await pool.fetch(
        "SELECT id, filename FROM attachments WHERE id = ANY($1::text[])", list(set(ids))
    )
    return {r["id"]: r["filename"] for r in rows}


# Whether an attachment ($1) is on a message, or on a ticket as it was raised, that the
# caller may see. Each goes through its own index (migrations 0094 and 0108): they count
# the (few) matches rather than take the first, because with LIMIT 1 the planner expected
# many matches and scanned every event (4 s at a million) or message instead.
_HELD = "m.attachments @> ARRAY[$1]::text[] AND m.attachments <> '{}'"
_RAISED = "e.type = 'TicketRaised' AND (e.data::jsonb -> 'attachments') ? $1"
STAFF_ON_MESSAGE_SQL = f"SELECT count(*) FROM ticket_messages m WHERE {_HELD}"
STAFF_ON_TICKET_SQL = f"SELECT count(*) FROM events e WHERE {_RAISED}"
CUSTOMER_ON_MESSAGE_SQL = (
    "SELECT count(*) FROM ticket_messages m JOIN ticket_summaries s ON s.id = m.ticket_id "
    f"WHERE s.requester_id = $2 AND m.visibility = 'public' AND {_HELD}"
)
CUSTOMER_ON_TICKET_SQL = (
    "SELECT count(*) FROM events e JOIN ticket_summaries s ON s.id = e.stream_id "
    f"WHERE s.requester_id = $2 AND e.version = 1 AND {_RAISED}"
)


async def may_download(pool: asyncpg.Pool, row: asyncpg.Record, actor: Actor) -> bool:
    if row["uploader_id"] == actor.id and row["uploader_role"] == actor.role:
        return True
    att_id = row["id"]
    staff = actor.role in ("agent", "admin", "auditor")
    if staff:
        if await pool.fetchval(STAFF_ON_MESSAGE_SQL, att_id):
            return True
        return bool(await pool.fetchval(STAFF_ON_TICKET_SQL, att_id))
    if await pool.fetchval(CUSTOMER_ON_MESSAGE_SQL, att_id, actor.id):
        return True
    return bool(await pool.fetchval(CUSTOMER_ON_TICKET_SQL, att_id, actor.id))


@get(
    "/{attachment_id:str}",
    summary="Download an attachment (uploader, or who may see a ticket it is on)",
    media_type="application/octet-stream",
    responses={
        200: ResponseSpec(
            data_container=bytes,
            media_type="*/*",
            description="The file, as the content type it was uploaded with (always as a "
            "download: Content-Disposition attachment, X-Content-Type-Options nosniff)",
            generate_examples=False,
        ),
        **READ_ERRORS,
        404: _problem("No such attachment"),
    },
)
async def download(
    request: Request[Any, Any, Any],
    attachment_id: FromPath[str],
) -> Response[bytes]:
    pool = pool_of(request)
    actor = _user(request)
    row = await pool.fetchrow(
        "SELECT a.id, a.filename, a.content_type, a.uploader_id, a.uploader_role, b.content "
        "FROM attachments a JOIN attachment_blobs b ON b.sha256 = a.sha256 WHERE a.id = $1",
        attachment_id[:100],
    )
    if row is None:
        raise NotFoundException(f"attachment {attachment_id!r} not found")
    await consistent(request)
    if not await may_download(pool, row, actor):
        raise Forbidden("you may download only your own uploads or files on tickets you can see")
    safe_name = row["filename"].replace('"', "").encode("ascii", "replace").decode()
    return Response(
        bytes(row["content"]),
        media_type=row["content_type"],
        headers={
            "Content-Disposition": f'attachment; filename="{safe_name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )
