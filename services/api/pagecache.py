"""Rendered list pages, kept with the read models' version they were read at.

Read models change only in the transactions that move their checkpoint (or in a rebuild,
which also stamps a new version), so a page read at version V is still exactly right
while the projections are current and at V. A list request asks
``projections.queries.list_page_consistent`` with the kept version:
one cheap statement (shared by the lists that wait together: ``VersionProbe``) answers
"unchanged" and the kept bytes are sent again, instead of
reading, decoding and encoding the rows. Desk queues and dashboards poll the same few
queries; each change to the read models costs one fresh read per query and process.
Bounded by entries and bytes, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import NamedTuple

from projections.consistency import ReadModelVersion, VersionProbe

MAX_ENTRIES = 2048
MAX_BYTES = 8 * 2**20


class KeptPage(NamedTuple):
    version: ReadModelVersion
    body: bytes


class PageCache:
    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._pages: OrderedDict[Hashable, KeptPage] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0
        self.probe = VersionProbe()  # "still at the kept version?", shared by concurrent lists

    def get(self, key: Hashable) -> KeptPage | None:
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
        return page

    def record(self, hit: bool) -> None:
        if hit:
            self.hits += 1
        else:
            self.misses += 1

    def put(self, key: Hashable, version: ReadModelVersion, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return  # one huge page would push out everything else
        old = self._pages.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._pages[key] = KeptPage(version, body)
        self._bytes += len(body)
        while len(self._pages) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped.body)

    def __len__(self) -> int:
        return len(self._pages)
