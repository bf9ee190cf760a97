"""services/coalesce.py: how concurrent requests are grouped, in plain asyncio."""

from __future__ import annotations

import asyncio

import pytest

from services.coalesce import Coalescer, settle


class Recorder(Coalescer[tuple[str, int], str]):
    """Keys are the first item; serving records each group and answers ``key:value``."""

    def __init__(self, max_group: int = 8, fail: bool = False) -> None:
        super().__init__(max_group=max_group)
        self.served: list[list[tuple[str, int]]] = []
        self.fail = fail
        self.gate = asyncio.Event()
        self.gate.set()

    def key(self, request: tuple[str, int]) -> object:
        return request[0]

    async def serve(self, group: list[tuple[tuple[str, int], asyncio.Future[str]]]) -> None:
        await self.gate.wait()
        self.served.append([r for r, _ in group])
        if self.fail:
            raise RuntimeError("boom")
        for (k, v), done in group:
            settle(done, f"{k}:{v}")


async def test_a_lone_request_is_served_alone() -> None:
    c = Recorder()
    assert await c.submit(("a", 1)) == "a:1"
    assert c.served == [[("a", 1)]] and c.groups == 1


async def test_requests_queued_meanwhile_share_the_next_group_and_keys_never_share() -> None:
    c = Recorder(max_group=3)
    c.gate.clear()  # the first group is in flight while the rest queue
    first = asyncio.ensure_future(c.submit(("a", 0)))
    await asyncio.sleep(0)
    rest = [asyncio.ensure_future(c.submit(r)) for r in [("b", 1), ("b", 2), ("c", 3), ("d", 4)]]
    await asyncio.sleep(0)
    c.gate.set()
    assert await first == "a:0"
    assert await asyncio.gather(*rest) == ["b:1", "b:2", "c:3", "d:4"]
    # ("b", 2) waits for a group without ("b", 1); groups hold at most three
    assert c.served == [[("a", 0)], [("b", 1), ("c", 3), ("d", 4)], [("b", 2)]]
    assert c.requests == 5


async def test_a_caller_gone_before_its_request_is_taken_is_dropped() -> None:
    c = Recorder()
    c.gate.clear()
    first = asyncio.ensure_future(c.submit(("a", 0)))
    await asyncio.sleep(0)
    gone = asyncio.ensure_future(c.submit(("b", 1)))
    kept = asyncio.ensure_future(c.submit(("c", 2)))
    await asyncio.sleep(0)
    gone.cancel()
    c.gate.set()
    assert await first == "a:0" and await kept == "c:2"
    assert c.served == [[("a", 0)], [("c", 2)]]


async def test_a_failing_group_fails_its_callers_and_the_next_request_is_served() -> None:
    c = Recorder(fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        await c.submit(("a", 1))
    c.fail = False
    assert await c.submit(("a", 2)) == "a:2"


# the abandoned loop's pending writer is garbage-collected unfinished: expected here
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_coalescer_works_on_after_its_event_loop_closed_mid_group() -> None:
    c = Recorder()
    c.gate.clear()

    stranded: list[asyncio.Future[str]] = []

    async def strand() -> None:
        stranded.append(asyncio.ensure_future(c.submit(("a", 1))))
        await asyncio.sleep(0)  # the group is in flight when this loop goes away

    old = asyncio.new_event_loop()
    old.run_until_complete(strand())
    old.close()  # without cancelling: the writer task stays pending forever
    c.gate = asyncio.Event()
    c.gate.set()

    async def again() -> str:
        return await asyncio.wait_for(c.submit(("b", 2)), timeout=5)

    assert asyncio.run(again()) == "b:2"
