"""The base every source spider builds on.

A source spider is thin: it names its ``source``, declares its :class:`~crawler.policy.SourcePolicy`
and the record types it yields, builds requests and turns responses into records. The base gives it:

* its policy applied as Scrapy settings (``custom_settings``), overridable from the command line;
* ``**kwargs`` acceptance, so scrapyd's ``_job`` and other deployment arguments never break a crawl;
* :meth:`dead_letter`, :meth:`parse_json` and :meth:`build` — bad input becomes a dead letter in
  ``failed_messages`` and the crawl goes on (DESIGN §3.3);
* :meth:`errback`, the default errback: a request that failed after its retries is a dead letter;
* :meth:`make_checkpoints`: :class:`OrderedCheckpoints`, which releases cursor checkpoints only once all
  work before them is done — or, in a distributed crawl, :class:`SharedCheckpoints`, which does the same
  across workers through Redis (:mod:`crawler.distributed`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import scrapy
from pydantic import ValidationError
from scrapy import signals
from scrapy.exceptions import UsageError
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.distributed.coordinator import Coordinator
from crawler.distributed.extension import Distributed
from crawler.extensions.services import Services
from crawler.items import Record
from crawler.items.control import Checkpoint, UnitDone
from crawler.policy import SourcePolicy

logger = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)
#: the unit of a page that stands for reading the page itself (what it yields besides its requests)
PAGE_READING = ""
#: the mode of a process that only takes work from a distributed crawl's shared queue
WORKER_MODE = "worker"
SECRET_NAME = re.compile(r"token|secret|password|passwd|key|auth|credential", re.IGNORECASE)


class SourceSpider(scrapy.Spider):
    """Base of every source spider; see the module docstring."""

    #: the source name, used for cursors, dead letters and ``_source``; defaults to ``name``
    source: ClassVar[str]
    policy: ClassVar[SourcePolicy]
    #: the record types this spider yields (one per namespace it writes)
    records: ClassVar[tuple[type[Record], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "source" not in cls.__dict__ and "name" in cls.__dict__:
            cls.source = cls.name
        if "policy" in cls.__dict__:
            cls.custom_settings = {
                **cls.policy.scrapy_settings(),
                **(cls.__dict__.get("custom_settings") or {}),
            }

    #: the cursor this run's checkpoints move (a spider with several sets it per mode)
    cursor_key: str = "default"

    #: start requests allowed to wait in the scheduler before ``start()`` pauses: memory stays flat
    #: however many names a crawl is given
    start_backlog: ClassVar[int] = 1000

    def __init__(self, *args: Any, shard: str | None = None, **kwargs: Any) -> None:
        #: ``-a shard=i/n``: this process takes the named packages whose stable hash falls in shard i of n,
        #: so n processes (on one host's cores or on several hosts) share a named crawl
        self.shard = _parse_shard(shard)
        # scrapyd passes _job (its job id, which becomes the run id), and deployments other underscored
        # arguments: accept them, keep the job id
        self.job_id: str | None = kwargs.get("_job")
        kwargs = {k: v for k, v in kwargs.items() if not k.startswith("_")}
        super().__init__(*args, **kwargs)
        #: the crawl's arguments as recorded in ``ingestion_runs`` (set by ``from_crawler``)
        self.arguments: dict[str, Any] = {}

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Any:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.arguments = {k: v for k, v in kwargs.items() if not k.startswith("_") and not SECRET_NAME.search(k)}
        if getattr(spider, "mode", None) == WORKER_MODE and not crawler.settings.get("REDIS_URL"):
            raise UsageError(f"{spider.name}: mode=worker joins a distributed crawl: set REDIS_URL")
        return spider

    def names_and_mode(
        self, packages: str | None, packages_file: str | None, mode: str | None, modes: tuple[str, ...]
    ) -> tuple[list[str], str]:
        """Package names from ``-a packages=a,b`` and/or ``-a packages_file=…`` (one per line), and the
        mode: ``named`` when names are given, else ``mode`` (default ``incremental``), checked against ``modes``.

        ``mode=worker`` is every spider's: join a distributed crawl (``REDIS_URL``) and take work from its
        shared queue only."""
        names = [n.strip() for n in (packages or "").split(",") if n.strip()]
        if packages_file:
            names += [n.strip() for n in Path(packages_file).read_text().splitlines() if n.strip()]
        if self.shard is not None:
            index, count = self.shard
            names = [n for n in dict.fromkeys(names) if zlib.crc32(n.encode()) % count == index]
        chosen = mode or ("named" if names or self.shard else "incremental")
        if chosen == WORKER_MODE:
            return [], chosen
        if chosen not in modes:
            raise UsageError(f"{self.name}: unknown mode {chosen!r}; use one of {', '.join((*modes, WORKER_MODE))}")
        if self.shard is not None and chosen != "named":
            raise UsageError(f"{self.name}: shard=i/n splits named packages; mode={chosen} reads one cursor")
        if chosen == "named" and not names and self.shard is None:
            others = "|".join(m for m in modes if m != "named")
            raise UsageError(f"{self.name}: give -a packages=name1,name2 (or packages_file=…), or -a mode={others}")
        return names, chosen

    async def start(self) -> AsyncIterator[Any]:
        """By mode: ``worker`` yields nothing (it takes from the shared queue); ``named`` one
        :meth:`name_request` per name, paced by the scheduler's room; any other, :meth:`start_listing`."""
        mode = getattr(self, "mode", None)
        if mode == WORKER_MODE:
            return
        if mode == "named" and self.distributed is not None:
            await self.share_named_requests()
            return
        if mode == "named":
            for name in dict.fromkeys(self.names):
                await self.room_in_scheduler()
                yield self.name_request(name)
            return
        async for item in self.start_listing():
            yield item

    async def share_named_requests(self) -> None:
        """A distributed named crawl: queue the named requests ahead, for every worker to take.

        Scrapy pulls start requests only as fast as this process's own downloads free up; the others
        would then find the shared queue empty. Up to ``start_backlog`` requests wait in it instead."""
        scheduler = self.crawler.engine.scheduler
        for count, name in enumerate(dict.fromkeys(self.names)):
            while count % 100 == 0 and len(scheduler) >= self.start_backlog:
                await asyncio.sleep(0.05)
            self.crawler.engine.crawl(self.name_request(name))

    def name_request(self, name: str) -> scrapy.Request:
        """The request for one named package (spiders with a ``named`` mode implement it)."""
        raise NotImplementedError

    async def start_listing(self) -> AsyncIterator[Any]:
        """The first requests of the spider's listing modes (a feed, an index)."""
        raise NotImplementedError
        yield  # an async generator

    async def room_in_scheduler(self) -> None:
        """Pause ``start()`` while ``start_backlog`` requests already wait and the downloader is full."""
        engine = self.crawler.engine
        scheduler = engine.scheduler if engine is not None else None
        if scheduler is not None and len(scheduler) >= self.start_backlog and engine.needs_backout():
            await self.crawler.signals.wait_for(signals.scheduler_empty)

    @property
    def services(self) -> Services:
        services = self.crawler.get_extension(Services)
        assert services is not None, "crawler.extensions.services.Services must be enabled"
        return services

    @property
    def distributed(self) -> Distributed | None:
        """The distributed-crawl extension when ``REDIS_URL`` is set, else None."""
        return self.crawler.get_extension(Distributed)

    @property
    def dedupe_across_workers(self) -> bool:
        """True in a distributed crawl: requests go through the shared dupefilter, so workers given
        overlapping names fetch each once. A single process de-duplicates names itself, for less."""
        return self.distributed is not None

    @cached_property
    def checkpoints(self) -> OrderedCheckpoints | SharedCheckpoints:
        """Checkpoints of the cursor ``cursor_key``: kept in this process, or shared by the workers of a
        distributed crawl. Built on first use (extensions do not exist yet in ``from_crawler``)."""
        if self.distributed is not None:
            return SharedCheckpoints(self.distributed.coordinator, self.source, self.cursor_key)
        return OrderedCheckpoints(self.source, self.cursor_key)

    def dead_letter(
        self, reason: str, *, url: str | None = None, payload: bytes | str | None = None, attempts: int = 1
    ) -> None:
        """Record an input that could not be processed, count it, and go on."""
        self.services.dead_letter(reason, url=url, payload=payload, attempts=attempts)

    def parse_json(self, response: Response) -> Any | None:
        """The response body as JSON, or None after recording a dead letter."""
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError as exc:
            self.dead_letter(f"invalid_json: {exc}", url=response.url, payload=response.body)
            return None

    def build(self, factory: Callable[..., R], payload: Any, *, url: str, raw: bytes | None = None) -> R | None:
        """``factory(payload)``, or None after recording a dead letter when it does not validate."""
        try:
            return factory(payload)
        except (ValidationError, ValueError, TypeError, KeyError, AttributeError) as exc:
            reason = f"invalid_record: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            self.dead_letter(reason, url=url, payload=raw if raw is not None else orjson.dumps(payload, default=str))
            return None

    def errback(self, failure: Failure) -> Iterator[Any]:
        """A request that failed for good (after retries) becomes a dead letter."""
        request = getattr(failure, "request", None)
        response = getattr(failure.value, "response", None)
        if response is not None:
            reason = f"http_{response.status}"
            payload: bytes | None = response.body
        else:
            reason = f"download_error: {type(failure.value).__name__}: {str(failure.value)[:200]}"
            payload = None
        retries = request.meta.get("retry_times", 0) if request is not None else 0
        self.dead_letter(reason, url=request.url if request else None, payload=payload, attempts=retries + 1)
        yield from self.request_finished(request.meta if request is not None else {})
        if request is not None and self.distributed is not None:
            # errback output skips the spider middlewares, so the lease is acknowledged here
            yield from self.distributed.lease_done(request.meta)

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """The spider arguments that retry these dead letters, and the ids of those they cover.

        Used by ``scrapy replay-failed``; a source that can retry its dead letters overrides it.
        """
        return {}, []

    def request_finished(self, meta: dict[str, Any]) -> Iterator[Any]:
        """Called when a request's work is done (record yielded, tombstone, or dead letter).

        Subclasses that track cursors override it to release checkpoints; the default does nothing.
        """
        return iter(())


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if not value:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise UsageError(f"shard must be i/n, e.g. 0/2 (got {value!r})") from None
    if not 0 <= index < count:
        raise UsageError(f"shard {value!r}: need 0 <= i < n")
    return index, count


class OrderedCheckpoints:
    """Release cursor checkpoints in order, each once every unit of work opened before it is done.

    A spider opens a *page* (e.g. one page of a changes feed) with its units of work (the requests it
    spawned) and the cursor value reached after it. When a unit's work is yielded, :meth:`done` gives the
    :class:`~crawler.items.control.UnitDone` to yield after it; the store pipeline calls :meth:`complete`
    when that item reaches it — after the unit's records, which then have their place in the store's
    arrival order. A page's checkpoint is released when its own units and those of every earlier page are
    complete, so the cursor never passes a record the store has not received. (The spider cannot release
    checkpoints itself: Scrapy pulls a callback's output ahead of processing it, so a checkpoint released
    in one callback can reach the store before the records of another.)
    """

    def __init__(self, source: str, key: str = "default") -> None:
        self.source = source
        self.key = key
        self._pages: dict[int, list[Any]] = {}  # page id -> [units not complete, cursor value, cursor key]
        self._next_id = 0
        self._head = 0  # the oldest page not yet released
        #: units opened and not yet done in the spider (for the spider's back-pressure)
        self.outstanding = 0

    def open(self, value: str, units: Sequence[str], key: str | None = None) -> tuple[int, list[Checkpoint]]:
        """Register a page and its units of work (e.g. package names); returns its id and any
        checkpoints released at once (a page with no work, once every earlier page is complete)."""
        page = self._next_id
        self._next_id += 1
        self._pages[page] = [len(units), value, key or self.key]
        self.outstanding += len(units)
        return page, self._release()

    def done(self, page: int, unit: str) -> list[UnitDone]:
        """One unit of ``page`` was yielded; returns the item to yield after its records."""
        self.outstanding -= 1
        return [UnitDone(self.source, page, unit)]

    def complete(self, page: int) -> list[Checkpoint]:
        """The store received a unit of ``page``; returns the checkpoints that are now safe to queue."""
        entry = self._pages[page]
        entry[0] -= 1
        return self._release() if entry[0] == 0 else []

    def _release(self) -> list[Checkpoint]:
        released: dict[str, Checkpoint] = {}  # per cursor key only the newest matters
        while self._head in self._pages and self._pages[self._head][0] <= 0:
            _, value, key = self._pages.pop(self._head)
            released.pop(key, None)
            released[key] = Checkpoint(self.source, value, key)
            self._head += 1
        return list(released.values())


class SharedCheckpoints:
    """:class:`OrderedCheckpoints` for a distributed crawl: pages and their units live in Redis, so a
    unit may finish on any worker; a page's cursor value is saved once it and every earlier page are
    stored (see :mod:`crawler.distributed.coordinator`).

    ``open`` and ``done`` return :class:`~crawler.items.control.UnitDone` items: like checkpoints, they
    take effect only after the records yielded before them are stored.
    """

    #: nothing to hold back locally: the shared queue serves feed pages after the queued packages
    outstanding = 0

    def __init__(self, coordinator: Coordinator, source: str, key: str = "default") -> None:
        self.coordinator = coordinator
        self.source = source
        self.key = key

    def open(self, value: str, units: Sequence[str], key: str | None = None) -> tuple[str, list[UnitDone]]:
        key = key or self.key
        page = f"{key}:{value}"
        self.coordinator.open_page(page, value, key, units)
        # a page with no work is released as soon as the pages before it are
        return page, [] if units else [UnitDone(self.source, page, "")]

    def done(self, page: str, unit: str) -> list[UnitDone]:
        return [UnitDone(self.source, page, unit)]
