"""Serve concurrent callers' requests in groups: one statement for many commands.

Callers queue a request and await its future; one writer task takes whatever has queued
while the previous group was served (at most ``max_group``, at most one request per key)
and hands the group to ``serve``, which settles every future of it. With nothing else
queued a request is served alone at once, so a lone caller waits for nobody. A caller
that goes away before its request is taken is dropped from the group.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

R = TypeVar("R")  # a request
T = TypeVar("T")  # its result

Waiting = tuple[R, asyncio.Future[T]]  # a request and the future its caller awaits


class Coalescer(Generic[R, T]):
    def __init__(self, *, max_group: int) -> None:
        self.max_group = max(1, max_group)
        self._queue: deque[Waiting[R, T]] = deque()
        self._writer: asyncio.Task[None] | None = None
        self.groups = 0  # groups served, for tests and benchmarks
        self.requests = 0

    def key(self, request: R) -> object:
        """Requests with equal keys never share a group (the later waits for the next)."""
        return request

    async def serve(self, group: list[Waiting[R, T]]) -> None:
        """Settle the future of every request of ``group``."""
        raise NotImplementedError

    async def submit(self, request: R) -> T:
        loop = asyncio.get_running_loop()
        writer = self._writer
        if writer is not None and writer.get_loop() is not loop:
            # used from a new event loop (the old one closed mid-group): forget the old's
            self._queue = deque(i for i in self._queue if i[1].get_loop() is loop)
            writer = None
        done: asyncio.Future[T] = loop.create_future()
        self._queue.append((request, done))
        if writer is None or writer.done():
            self._writer = loop.create_task(self._serve_queued())
        return await done

    async def _serve_queued(self) -> None:
        taken: list[Waiting[R, T]] = []
        try:
            while self._queue:
                taken = self._take()
                if taken:
                    self.groups += 1
                    self.requests += len(taken)
                    await self.serve(taken)
                taken = []
        except GeneratorExit:  # closed by the garbage collector after its loop: nobody waits
            raise
        except BaseException as exc:  # cancelled (shutdown) or a bug: nobody waits forever
            failure = exc if isinstance(exc, Exception) else ConnectionError("shutting down")
            for _, done in [*taken, *self._queue]:
                if not done.done():
                    done.set_exception(failure)
            self._queue.clear()
            raise

    def _take(self) -> list[Waiting[R, T]]:
        group: list[Waiting[R, T]] = []
        later: list[Waiting[R, T]] = []
        keys: set[object] = set()
        while self._queue and len(group) < self.max_group:
            item = self._queue.popleft()
            if item[1].done():  # its caller went away
                continue
            k = self.key(item[0])
            if k in keys:
                later.append(item)
                continue
            keys.add(k)
            group.append(item)
        self._queue.extendleft(reversed(later))
        return group


def settle(done: asyncio.Future[T], result: T | BaseException) -> None:
    """Set ``done``'s result or exception, unless its caller has gone away."""
    if done.done():
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)
