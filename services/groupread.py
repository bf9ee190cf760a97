"""Group read: the stream reads of concurrent commands served by one statement.

A command on an existing ticket first reads the ticket's events to decide. Under load
those reads are most of the command's round trips; ``GroupReader`` serves the reads that
queue while the previous group's statement runs with one ``EventStore.
read_many_for_decision`` (services/coalesce.py). Every read still starts after its
caller asked, so a command sees every write acknowledged before it.
"""

from __future__ import annotations

from services.coalesce import Coalescer, Waiting, settle
from services.eventstore import EventStore, StreamForDecision

MAX_GROUP = 64  # streams per statement


class GroupReader(Coalescer[int, StreamForDecision]):
    def __init__(self, store: EventStore, *, max_group: int = MAX_GROUP) -> None:
        super().__init__(max_group=max_group)
        self.store = store

    async def read(self, stream_id: int) -> StreamForDecision:
        """What a command needs of stream ``stream_id`` (its facts and head hash)."""
        return await self.submit(stream_id)

    async def serve(self, group: list[Waiting[int, StreamForDecision]]) -> None:
        try:
            found = await self.store.read_many_for_decision([sid for sid, _ in group])
        except Exception as exc:
            for _, done in group:
                settle(done, exc)
            return
        for sid, done in group:
            settle(done, found[sid])
