"""The arq worker: projections on wake-ups and every second, SLA sweeps (``ticketing worker``).

The projections run in a long-lived task started with the worker (workers/projector.py),
woken through Redis pub/sub; the ``catch_up`` cron job is a second, independent backstop.

``functions`` and ``cron_jobs`` are module-level lists so other jobs (the SLA sweep)
register by appending to them. Jobs and results are msgpack (msgspec), never pickle.
Run it directly with ``python -m workers.main [--queue NAME] [--batch-size N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

import redis.asyncio as aioredis
from arq import cron, func
from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Function, Worker, create_worker
from redis.exceptions import RedisError

from projections.runner import DEFAULT_BATCH, catch_up
from services.commands import CommandService
from services.db import create_pool
from services.gctune import tune_for_serving
from services.settings import Settings, SettingsError, load_settings
from workers.codec import QUEUE_NAME, job_deserializer, job_serializer
from workers.projector import Projector
from workers.sla import SWEEP_TIMEOUT_S, sla_sweep, sla_sweep_tick, sweep_once
from workers.waker import wake_channel

log = logging.getLogger("ticketing.worker")

# a single job run stops after this many batches; the next wake-up or tick continues
MAX_BATCHES_PER_JOB = 400


async def project(ctx: dict[str, Any]) -> int:
    """Catch the read models up from their checkpoint; returns events applied."""
    return await catch_up(
        ctx["pool"], ctx.get("batch_size", DEFAULT_BATCH), max_batches=MAX_BATCHES_PER_JOB
    )


async def catch_up_tick(ctx: dict[str, Any]) -> int:
    """The periodic catch-up: nothing depends on a wake-up arriving."""
    return await project(ctx)


functions: list[Function] = [func(project, name="project", keep_result=0, timeout=300, max_tries=1)]
cron_jobs: list[CronJob] = [
    cron(
        catch_up_tick,
        name="catch_up",
        second=set(range(60)),
        run_at_startup=True,
        unique=True,
        keep_result=0,
        timeout=300,
        max_tries=1,
    )
]

# The SLA sweep (workers/sla.py): a one-second tick gated in Redis to one sweep per
# TICKETING_SLA_SWEEP_SECONDS across all workers; ``sla_sweep`` can also be enqueued.
functions.append(
    func(sla_sweep, name="sla_sweep", keep_result=0, timeout=SWEEP_TIMEOUT_S, max_tries=1)
)
cron_jobs.append(
    cron(
        sla_sweep_tick,
        name="sla_sweep_tick",
        second=set(range(60)),
        unique=True,
        keep_result=0,
        timeout=SWEEP_TIMEOUT_S,
        max_tries=1,
    )
)


async def startup(ctx: dict[str, Any]) -> None:
    settings: Settings = ctx.get("settings") or load_settings()
    ctx["settings"] = settings
    if "pool" in ctx:  # the supervisor's (``supervise``): it outlives this arq worker
        log.info("job queue started")
        return
    if not settings.database_url:
        raise SettingsError("TICKETING_DATABASE_URL is required to run the worker")
    ctx["pool"] = await create_pool(
        settings.database_url, min_size=1, max_size=max(2, settings.pool_max_size)
    )
    ctx["owns_pool"] = True
    ctx["commands"] = CommandService(ctx["pool"], settings.sla_policy)
    if settings.redis_url:
        projector = Projector(
            ctx["pool"],
            settings.redis_url,
            wake_channel(ctx.get("queue_name") or QUEUE_NAME),
            batch_size=ctx.get("batch_size", DEFAULT_BATCH),
        )
        ctx["projector"] = asyncio.get_running_loop().create_task(projector.run())
    log.info("worker started")


async def shutdown(ctx: dict[str, Any]) -> None:
    task = ctx.pop("projector", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    if ctx.pop("owns_pool", False):
        await ctx.pop("pool").close()


class WorkerSettings:
    """arq reads these by name (a misspelt one is silently ignored: tests check them)."""

    functions = functions
    cron_jobs = cron_jobs
    on_startup = startup
    on_shutdown = shutdown
    job_serializer = job_serializer
    job_deserializer = job_deserializer
    queue_name = QUEUE_NAME
    poll_delay = 0.25  # only cron ticks and enqueued jobs come through the queue
    max_jobs = 10
    job_timeout = 300
    keep_result = 0
    max_tries = 3
    health_check_interval = 10


def make_worker(
    settings: Settings,
    *,
    queue_name: str | None = None,
    batch_size: int | None = None,
    handle_signals: bool = True,
    shared: dict[str, Any] | None = None,
) -> Worker:
    if not settings.redis_url:
        raise SettingsError("TICKETING_REDIS_URL is required to run the worker")
    ctx: dict[str, Any] = {"settings": settings, "queue_name": queue_name or QUEUE_NAME}
    ctx.update(shared or {})
    if batch_size is not None:
        ctx["batch_size"] = batch_size
    return create_worker(
        WorkerSettings,  # type: ignore[arg-type]  # arq's Protocol wants class attributes typed
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        queue_name=queue_name or QUEUE_NAME,
        ctx=ctx,
        handle_signals=handle_signals,
    )


def use_uvloop() -> None:
    """Run on uvloop (as the API does under uvicorn) when it is installed: the worker's
    per-batch cost is mostly socket I/O on the event loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(None)  # arq's Worker creates its loop from the policy


# arq's loop ends (raises) when it loses Redis: these mean "Redis is away", not a bug
REDIS_AWAY = (RedisError, OSError, asyncio.TimeoutError)
REDIS_RETRY_S = 1.0


async def supervise(
    settings: Settings, *, queue_name: str | None = None, batch_size: int | None = None
) -> None:
    """The worker until cancelled, whatever Redis does.

    The database pool and the projection loop (workers/projector.py, which catches up
    every second with or without wake-ups) belong to this supervisor, not to the arq
    worker: when Redis goes away, arq's polling loop stops with a connection error, the
    read models keep being built, SLA sweeps run from here, and arq starts again as soon
    as Redis answers (SPEC 5: projections catch up; nothing waits for an operator).
    """
    if not settings.redis_url:
        raise SettingsError("TICKETING_REDIS_URL is required to run the worker")
    queue = queue_name or QUEUE_NAME
    # what an arq worker's startup makes for itself (pool, command service, projection
    # loop), made once here; each arq worker run gets the pool and the command service
    own: dict[str, Any] = {"settings": settings, "queue_name": queue}
    if batch_size is not None:
        own["batch_size"] = batch_size
    await startup(own)
    shared = {"pool": own["pool"], "commands": own["commands"]}
    try:
        while True:
            worker = make_worker(
                settings,
                queue_name=queue,
                batch_size=batch_size,
                handle_signals=False,
                shared=shared,
            )
            try:
                await worker.async_run()
                return
            except REDIS_AWAY as exc:
                log.warning(
                    "Redis is unavailable (%s); read models and SLA sweeps go on without "
                    "it, and the job queue resumes when it answers",
                    exc.__class__.__name__,
                )
            finally:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await worker.close()
            await _without_redis(settings, own["commands"])
            log.warning("Redis answers again; resuming the job queue")
    finally:
        await shutdown(own)


async def _without_redis(settings: Settings, commands: CommandService) -> None:
    """Until Redis answers: the SLA sweep every TICKETING_SLA_SWEEP_SECONDS (the projector
    keeps the read models current meanwhile). Exactly-once needs no Redis: the domain
    decides every breach on the ticket's own stream."""
    assert settings.redis_url
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=2)
    last_sweep = float("-inf")
    try:
        while True:
            if time.monotonic() - last_sweep >= settings.sla_sweep_seconds:
                last_sweep = time.monotonic()
                try:
                    await sweep_once(commands.pool, commands, commands.clock())
                except Exception:  # the database may be away too: try again next time
                    log.exception("SLA sweep without Redis failed")
            with contextlib.suppress(*REDIS_AWAY):
                if await client.ping():
                    return
            await asyncio.sleep(REDIS_RETRY_S)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def run(
    settings: Settings, *, queue_name: str | None = None, batch_size: int | None = None
) -> None:
    """Run the worker in the foreground until SIGINT/SIGTERM (``ticketing worker``)."""
    use_uvloop()
    tune_for_serving()

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await supervise(settings, queue_name=queue_name, batch_size=batch_size)

    asyncio.run(main())


async def run_async(
    settings: Settings, *, queue_name: str | None = None, batch_size: int | None = None
) -> None:
    """Run the worker inside the running event loop until cancelled (``ticketing dev``)."""
    await supervise(settings, queue_name=queue_name, batch_size=batch_size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.main", description=__doc__)
    parser.add_argument("--queue", default=None, help=f"arq queue name (default {QUEUE_NAME})")
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(message)s")
    run(settings, queue_name=args.queue, batch_size=args.batch_size)


if __name__ == "__main__":
    main()
