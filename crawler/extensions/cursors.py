"""The cursor protocol: one component knows what each cursor position covers and when it is stored.

Spiders never yield control items or save cursors. A spider *declares* a cursor position and what it
covers, through :class:`crawler.spiders.base.SourceSpider`:

* ``self.checkpoint(response, value, key=…)`` in a callback: cursor ``key`` may move to ``value`` once
  this response's own output, and the work of every request it yields after the call (transitively:
  retries, re-fetches, next pages, detail requests), is stored;
* ``self.cursor_page(value, requests, key=…)``: the same for a list of requests made anywhere (a page
  of an index listing), or for no request at all (a position reached once all earlier ones are).

Positions of one *stream* (default: the cursor key) are released in the order they were declared, so a
cursor never passes work declared before it. Every request is a *unit* of work; the spider middleware
(:mod:`crawler.middlewares.work`) gives each its id and the pages it belongs to, and appends a
:class:`~crawler.items.control.WorkDone` after its callback's output — or after its dead letter, when
the download failed or the callback raised. The store pipeline completes the unit when that item
arrives, after the unit's records: a released position is then saved once those records are durably
written (:mod:`crawler.pipelines.ledger`). A page declared with ``hold_on_failure`` is not saved if a
unit of it ended as a dead letter, and no later position of its stream is saved in this run: the next
run covers that work again.

In one process the pages live here; in a distributed crawl (``REDIS_URL``) in Redis, so a unit may
finish on any worker (:class:`SharedPages`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler

from crawler.distributed.coordinator import LEASE_META, Coordinator
from crawler.distributed.extension import Distributed
from crawler.items.control import Checkpoint, WorkDone

#: request meta: the unit id of a request, and the ids of the cursor pages it belongs to
UNIT_META = "work_unit"
PAGES_META = "work_pages"
#: request meta: set when the request ended as a dead letter (its pages then know it failed)
FAILED_META = "work_failed"
#: request meta: a request that starts new work: it joins no page of the response that yields it
INDEPENDENT_META = "work_independent"
#: request meta: the unit's WorkDone is made (once per unit)
FINISHED_META = "work_finished"
#: request meta: placed in its page by ``cursor_page()`` (the middleware leaves its unit alone)
PLACED_META = "work_placed"


def child_unit(parent: str, index: int) -> str:
    """A deterministic unit id: re-running a callback (a re-queued request) names its requests alike,
    so a distributed page never waits for a unit that was registered and then lost."""
    return hashlib.blake2b(f"{parent}/{index}".encode(), digest_size=10).hexdigest()


@dataclass
class _Page:
    key: str
    #: None: the page only orders its stream (nothing is saved when it is released)
    value: str | None
    stream: str
    hold_on_failure: bool
    units: set[str] = field(default_factory=set)
    failed: bool = False


class LocalPages:
    """Cursor pages of one process: released per stream, in declaration order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._pages: dict[str, _Page] = {}
        self._streams: dict[str, deque[str]] = {}
        self._held: set[str] = set()  # streams with a failed, held page: nothing later is saved
        self._ids = itertools.count()
        self.released: list[Checkpoint] = []

    def open(self, key: str, value: str | None, stream: str, hold_on_failure: bool, units: Iterable[str]) -> str:
        page = f"{stream}#{next(self._ids)}"
        self._pages[page] = _Page(key, value, stream, hold_on_failure, set(units))
        self._streams.setdefault(stream, deque()).append(page)
        self._release(stream)
        return page

    def add(self, pages: Sequence[str], unit: str) -> None:
        for page in pages:
            if page in self._pages:
                self._pages[page].units.add(unit)

    def done(self, pages: Sequence[str], unit: str, failed: bool) -> None:
        streams = set()
        for page in pages:
            entry = self._pages.get(page)
            if entry is None:
                continue
            entry.units.discard(unit)
            entry.failed = entry.failed or failed
            streams.add(entry.stream)
        for stream in streams:
            self._release(stream)

    def _release(self, stream: str) -> None:
        order = self._streams[stream]
        while order and not self._pages[order[0]].units:
            entry = self._pages.pop(order.popleft())
            if entry.failed and entry.hold_on_failure:
                self._held.add(stream)
            if stream not in self._held and entry.value is not None:
                self.released.append(Checkpoint(self.source, entry.value, entry.key))
        if not order:  # one stream per ETag'd URL: do not keep an empty queue for each
            del self._streams[stream]

    def take_released(self) -> list[Checkpoint]:
        if not self.released:  # the store asks for every item: nothing to allocate on the common path
            return []
        released, self.released = self.released, []
        return released

    def __len__(self) -> int:
        return len(self._pages)


class SharedPages:
    """Cursor pages of a distributed crawl, in Redis (see :mod:`crawler.distributed.coordinator`): a unit
    may finish on any worker; pages are released in the order they were opened, across streams.
    Released values are saved by the worker that releases them (:class:`Distributed.acknowledge`)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def open(self, key: str, value: str | None, stream: str, hold_on_failure: bool, units: Iterable[str]) -> str:
        assert value is not None, "a distributed page names a cursor position"
        # named by its position: a page read again after a crash is the same page
        page = f"{key}:{value}"
        self.coordinator.open_page(page, value, key, list(units))
        return page

    def add(self, pages: Sequence[str], unit: str) -> None:
        """Nothing here: the shared scheduler adds the unit to its pages when it queues the request, in
        the same step (:meth:`Coordinator.push`)."""

    def done(self, pages: Sequence[str], unit: str, failed: bool) -> None:
        raise AssertionError("distributed units are completed when their records are stored (Distributed)")

    def take_released(self) -> list[Checkpoint]:
        return []


class Cursors:
    """The component that owns a crawl's cursor pages (enabled in ``EXTENSIONS``; always on)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        #: units handed to the scheduler whose callback has not finished (a spider's back-pressure)
        self.outstanding = 0
        self._start_units = itertools.count()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Cursors:
        return cls(crawler)

    @property
    def source(self) -> str:
        spider = self.crawler.spider
        return getattr(spider, "source", None) or spider.name

    @property
    def distributed(self) -> Distributed | None:
        return self.crawler.get_extension(Distributed)

    @cached_property
    def pages(self) -> LocalPages | SharedPages:
        """Built on first use: the spider and the distributed extension exist by then."""
        distributed = self.distributed
        return SharedPages(distributed.coordinator) if distributed else LocalPages(self.source)

    # -- declared by spiders (through SourceSpider) ------------------------------------------------

    def checkpoint(self, meta: dict[str, Any], value: str, key: str, stream: str | None, hold_on_failure: bool) -> None:
        """A position covering the unit whose meta this is and what it yields from now on."""
        unit = meta.get(UNIT_META)
        if unit is None:  # a request the middleware never saw (a test calling a callback directly)
            unit = meta[UNIT_META] = child_unit("orphan", next(self._start_units))
        page = self.pages.open(key, value, stream or key, hold_on_failure, [unit])
        meta[PAGES_META] = (*meta.get(PAGES_META, ()), page)

    def page(
        self, value: str | None, requests: Sequence[Request], key: str, stream: str | None, hold_on_failure: bool
    ) -> list[Request]:
        """A position covering these requests (none: reached once every earlier one of its stream is)."""
        units = []
        for request in requests:
            request.meta[UNIT_META] = child_unit("page", next(self._start_units))
            units.append(request.meta[UNIT_META])
        page = self.pages.open(key, value, stream or key, hold_on_failure, units)
        for request in requests:
            request.meta[PAGES_META] = (page,)
            request.meta[PLACED_META] = True
            request.dont_filter = True  # a filtered request would never complete its page
        return list(requests)

    # -- used by the work middleware and the base spider's errback ---------------------------------

    def adopt(self, parent: dict[str, Any] | None, request: Request, index: int) -> None:
        """Give a request yielded by ``parent``'s callback (None: by ``start()``) its unit and pages."""
        meta = request.meta
        self.outstanding += 1
        if meta.pop(PLACED_META, False):
            return  # placed by cursor_page() already
        # a fresh unit even when the spider copied its response's meta into the request
        for inherited in (UNIT_META, PAGES_META, FAILED_META, FINISHED_META):
            meta.pop(inherited, None)
        if parent is not None and meta.get(LEASE_META) == parent.get(LEASE_META):
            meta.pop(LEASE_META, None)  # the lease is the parent's: its own work is acknowledged with it
        independent = meta.pop(INDEPENDENT_META, False)
        seed = parent.get(UNIT_META, "start") if parent is not None else "start"
        meta[UNIT_META] = child_unit(f"{seed}{'!' if independent else ''}", index)
        meta[PAGES_META] = () if parent is None or independent else tuple(parent.get(PAGES_META, ()))
        if meta[PAGES_META]:
            request.dont_filter = True  # a filtered request would never complete its pages
            self.pages.add(meta[PAGES_META], meta[UNIT_META])

    def finished(self, meta: dict[str, Any]) -> WorkDone | None:
        """The item that follows a unit's output (its records): completes it in its pages once stored.
        None if it was made already (an errback run inside the middleware chain, for an HTTP error), or
        if nothing waits for it (no page, no lease: a named fetch in one process)."""
        if meta.get(FINISHED_META):
            return None
        meta[FINISHED_META] = True
        self.outstanding = max(self.outstanding - 1, 0)
        lease = meta.get(LEASE_META)
        distributed = self.distributed
        if distributed is None and not meta.get(PAGES_META):
            return None
        if distributed is not None:
            distributed.expect_ack()  # every WorkDone is applied once what came before it is stored
        return WorkDone(meta.get(UNIT_META, ""), tuple(meta.get(PAGES_META, ())), bool(meta.get(FAILED_META)), lease)

    def complete(self, item: WorkDone) -> list[Checkpoint]:
        """In one process: the store received ``item`` after the unit's records; the checkpoints now
        released (their records arrived before) follow them in the store's order."""
        pages = self.pages
        assert isinstance(pages, LocalPages)
        if item.pages:
            pages.done(item.pages, item.unit, item.failed)
        return pages.take_released()

    def take_released(self) -> list[Checkpoint]:
        """Positions released when declared (nothing left to wait for), for the store to queue."""
        return self.pages.take_released()
