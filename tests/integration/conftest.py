"""Fixtures for the projection and worker tests (all prefixed ``proj_``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from proj_helpers import ProjWorker

from services.commands import CommandService


@pytest.fixture
def proj_queue() -> str:
    return f"ticketing:test:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def proj_workers(servers: Any) -> Iterator[list[ProjWorker]]:
    """Workers started by a test (append ProjWorker instances); all stopped afterwards."""
    started: list[ProjWorker] = []
    yield started
    for w in started:
        w.kill()
        if w.proc.stderr is not None:
            w.proc.stderr.close()


@pytest.fixture
async def proj_service(fresh_pool: asyncpg.Pool, settings: Any) -> AsyncIterator[CommandService]:
    yield CommandService(fresh_pool, settings.sla_policy)
