"""The base every source spider builds on: :class:`SourceSpider`.

Checklist for a new source (the existing packages show a feed, an index listing and an API walked by
links):

1. A package ``crawler/spiders/<name>/`` with ``source.py`` (``SOURCE = Source(...)``: record types,
   modes, policy, settings, schedule, own middlewares or download handlers — :mod:`crawler.sources`),
   ``records.py`` (one :class:`~crawler.items.base.Record` per namespace, with its key and, where the
   source has one, its ``version`` column) and ``spider.py`` (a ``SourceSpider`` with
   ``declaration = SOURCE``). Nothing outside the package names the source.
2. Arguments: declare them in ``SOURCE.arguments`` (name, type, choices, help: checked before the crawl
   starts, listed by ``scrapy describe``) and take them in ``__init__(self, <arguments>, **kwargs)``;
   named crawls call :meth:`names_and_mode` and implement :meth:`name_request`; listings implement
   :meth:`start_listing`.
3. Settings: read them from ``self.options`` (typed and checked before the crawl starts). A request that
   names the key of the record it fetches carries it in ``meta[EXPECTED_KEY_META]``.
4. Callbacks turn a response into records, tombstones or dead letters: use :meth:`parse_json`,
   :meth:`build` and :meth:`dead_letter` (always pass ``response=``). A callback that raises becomes a
   dead letter; a failed download too (:meth:`errback`; a custom errback must ``yield from
   self.errback(failure)``).
5. Cursors: declare what a position covers — :meth:`checkpoint` in a callback, :meth:`cursor_page` for
   a listing's page — and mark a feed's next page :meth:`independent`. Never yield control items and
   never save a cursor: :mod:`crawler.extensions.cursors` does it once the covered records are stored.
6. Pace a long listing with :meth:`more_work` and :attr:`outstanding`.
7. Tests: a loopback fake in ``tests/fakes/``, the source's tests, and the checks over every source
   (``tests/test_sources.py``) pass without editing them: name callbacks ``parse_*`` and list one
   request per callback in :meth:`smoke_requests`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import scrapy
from pydantic import ValidationError
from scrapy import signals
from scrapy.exceptions import UsageError
from scrapy.http import Response
from scrapy.settings import BaseSettings
from twisted.python.failure import Failure

from crawler.distributed.extension import Distributed
from crawler.extensions.cursors import FAILED_META, INDEPENDENT_META, Cursors
from crawler.extensions.services import Services
from crawler.items import Record
from crawler.sources import Source

logger = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)
#: request meta: the key of the record the request asks for (checked against the answer's, see ``build``)
EXPECTED_KEY_META = "expected_key"
#: the mode of a process that only takes work from a distributed crawl's shared queue
WORKER_MODE = "worker"
SECRET_NAME = re.compile(r"token|secret|password|passwd|key|auth|credential", re.IGNORECASE)


class SourceSpider(scrapy.Spider):
    """Base of every source spider; see the module docstring."""

    #: the source's declaration (``crawler/spiders/<name>/source.py``)
    declaration: ClassVar[Source]
    #: the source name, used for cursors, dead letters and ``_source`` (from the declaration)
    source: ClassVar[str]
    #: the record types this spider yields (one per namespace it writes; from the declaration)
    records: ClassVar[tuple[type[Record], ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        declaration = cls.__dict__.get("declaration")
        if declaration is None:
            return
        cls.name = cls.source = declaration.name
        cls.records = declaration.records
        cls.custom_settings = {
            **declaration.policy.scrapy_settings(),
            **(cls.__dict__.get("custom_settings") or {}),
        }

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        """The policy (``custom_settings``), then the source's own settings and components: a declared
        setting not given with ``-s`` or in the project is read from the environment, else its default;
        the source's middlewares and download handlers join the project's."""
        super().update_settings(settings)
        declaration = getattr(cls, "declaration", None)
        if declaration is None:
            return
        for setting in declaration.settings:
            if settings.get(setting.name) in (None, "") and os.environ.get(setting.name):
                settings.set(setting.name, os.environ[setting.name], priority="project")
            elif settings.get(setting.name) is None and setting.default is not None:
                settings.set(setting.name, setting.default, priority="default")
        # The merged dicts at spider priority: Scrapy re-applies the process's settings to a crawler it
        # creates (``CrawlerProcess.create_crawler``), which would replace a dict changed in place.
        for name, own in (
            ("DOWNLOADER_MIDDLEWARES", declaration.downloader_middlewares),
            ("DOWNLOAD_HANDLERS", declaration.download_handlers),
        ):
            if own:
                settings.set(name, {**settings.getdict(name), **own}, priority="spider")

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
        #: the source's declared settings, typed and checked (set by ``from_crawler``)
        self.options: dict[str, Any] = {}
        self._lookup: Any = None  # a DuckDB connection over what earlier runs stored (stored_before)
        self._lookup_lock = threading.Lock()

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> Any:
        # the declared arguments only, typed (``scrapy crawl`` checked them already; scrapyd and other
        # runners come through here)
        kwargs = cls.declaration.check_arguments(kwargs)
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.arguments = {k: v for k, v in kwargs.items() if not k.startswith("_") and not SECRET_NAME.search(k)}
        spider.options = cls.declaration.read_settings(crawler.settings)
        if getattr(spider, "mode", None) == WORKER_MODE and not crawler.settings.get("REDIS_URL"):
            raise UsageError(f"{spider.name}: mode=worker joins a distributed crawl: set REDIS_URL")
        return spider

    def names_and_mode(
        self, packages: str | None, packages_file: str | None, mode: str | None
    ) -> tuple[list[str], str]:
        """Package names from ``-a packages=a,b`` and/or ``-a packages_file=…`` (one per line), and the
        mode: ``named`` when names are given, else ``mode`` (default ``incremental``), checked against the
        declared modes.

        ``mode=worker`` is every spider's: join a distributed crawl (``REDIS_URL``) and take work from its
        shared queue only."""
        names = [n.strip() for n in (packages or "").split(",") if n.strip()]
        if packages_file:
            names += [n.strip() for n in Path(packages_file).read_text().splitlines() if n.strip()]
        if self.shard is not None:
            index, count = self.shard
            names = [n for n in dict.fromkeys(names) if zlib.crc32(n.encode()) % count == index]
        modes = self.declaration.modes
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
        if mode == "named":
            self.names = await self.not_fresh(list(dict.fromkeys(self.names)))
        if mode == "named" and self.distributed is not None:
            await self.share_named_requests()
            return
        if mode == "named":
            for name in self.names:
                await self.room_in_scheduler()
                yield self.name_request(name)
            return
        async for item in self.start_listing():
            yield item

    async def not_fresh(self, names: list[str]) -> list[str]:
        """The names to fetch: with a freshness TTL (``FRESHNESS_TTL_SECONDS``, from the policy), those whose
        record was not stored within it. A cache of what was fetched lately, kept in the stored data."""
        ttl = self.crawler.settings.getfloat("FRESHNESS_TTL_SECONDS", 0.0)
        if ttl <= 0 or not names:
            return names
        fresh = await asyncio.to_thread(self._stored_since, self.records[0], ttl)
        kept = [name for name in names if self.key_of_name(name) not in fresh]
        self.crawler.stats.set_value(f"{self.source}/fresh_skipped", len(names) - len(kept))
        self.logger.info(
            "%s: %d of %d names stored within %g s: not fetched again",
            self.name,
            len(names) - len(kept),
            len(names),
            ttl,
        )
        return kept

    def key_of_name(self, name: str) -> str:
        """The stored key of a name given as an argument (a source that normalizes names overrides it)."""
        return name

    def _stored_since(self, record_type: type[Record], seconds: float) -> set[str]:
        rows = self._look_up(
            f'SELECT DISTINCT {_key_sql(record_type)} FROM "{record_type.table}_history" '
            "WHERE _ingested_at >= now() - to_seconds(?)",
            [seconds],
        )
        return {key for (key,) in rows}

    def _look_up(self, sql: str, parameters: list[Any]) -> list[tuple[Any, ...]]:
        """Run a query over what earlier runs stored, on one DuckDB connection kept for the crawl."""
        with self._lookup_lock:
            if self._lookup is None:
                from crawler.query.views import connect  # DuckDB is loaded only by the runs that need it

                self._lookup = connect(self.services.store)
            return self._lookup.execute(sql, parameters).fetchall()

    async def share_named_requests(self) -> None:
        """A distributed named crawl: queue the named requests ahead, for every worker to take.

        Scrapy pulls start requests only as fast as this process's own downloads free up; the others
        would then find the shared queue empty. Up to ``start_backlog`` requests wait in it instead."""
        scheduler = self.crawler.engine.scheduler
        for count, name in enumerate(self.names):
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

    @property
    def cursors(self) -> Cursors:
        cursors = self.crawler.get_extension(Cursors)
        assert cursors is not None, "crawler.extensions.cursors.Cursors must be enabled"
        return cursors

    # -- cursors: what a position covers (crawler.extensions.cursors) -------------------------------

    def checkpoint(
        self,
        response: Response,
        value: str,
        *,
        key: str = "default",
        stream: str | None = None,
        hold_on_failure: bool = False,
    ) -> None:
        """Cursor ``key`` may move to ``value`` once this response's output and the work of every request
        it yields from now on are stored, and every earlier position of ``stream`` (default: ``key``) is.
        ``hold_on_failure``: not if any of that work ended as a dead letter (nor any later position of
        the stream, this run)."""
        self.cursors.checkpoint(response.meta, value, key, stream, hold_on_failure)

    def cursor_page(
        self,
        value: str | None,
        requests: Sequence[scrapy.Request] = (),
        *,
        key: str = "default",
        stream: str | None = None,
        hold_on_failure: bool = False,
    ) -> list[scrapy.Request]:
        """Cursor ``key`` may move to ``value`` once the work of ``requests`` (yield them) is stored, and
        every earlier position of ``stream`` is; with no requests, as soon as the earlier ones are. A None
        value moves no cursor: the page only keeps its place in the stream's order."""
        return self.cursors.page(value, requests, key, stream, hold_on_failure)

    @staticmethod
    def independent(request: scrapy.Request) -> scrapy.Request:
        """Mark a request as new work (a feed's next page): it joins none of the pages of the response
        that yields it, so their positions do not wait for everything after them."""
        request.meta[INDEPENDENT_META] = True
        return request

    @property
    def outstanding(self) -> int:
        """Requests handed to the scheduler whose callback has not finished (for back-pressure)."""
        return self.cursors.outstanding

    def more_work(self) -> Iterable[scrapy.Request]:
        """Called after every response's output: requests to add now (a listing that queues its pages
        as earlier ones drain). Default: none."""
        return ()

    # -- bad input (DESIGN §3.3) ----------------------------------------------------------------------

    def dead_letter(
        self,
        reason: str,
        *,
        response: Response | None = None,
        url: str | None = None,
        payload: bytes | str | None = None,
        attempts: int = 1,
    ) -> None:
        """Record an input that could not be processed, count it, and go on. With ``response``, its unit
        of work is marked failed (a cursor page that holds on failure then stays where it is)."""
        if response is not None:
            response.meta[FAILED_META] = True
            url = url or response.url
        self.services.dead_letter(reason, url=url, payload=payload, attempts=attempts)

    def not_found(self, key: str, response: Response) -> None:
        """A key the source does not have, never stored and not reported deleted (a typo in a named
        crawl): a dead letter and a warning, not a tombstone."""
        self.logger.warning("%s: %r not found at the source (never stored): no tombstone written", self.name, key)
        self.dead_letter("not_found", response=response, payload=response.body)

    async def stored_before(self, record_type: type[Record], key: str) -> bool:
        """Whether a record of ``record_type`` with this key was stored by an earlier run (a tombstone
        is written only for those, or for keys the source itself reports deleted)."""
        found, _ = await asyncio.to_thread(self._stored, record_type, key)
        return found

    async def stored_version(self, record_type: type[Record], key: str) -> Any | None:
        """The highest ``version_column`` value stored for this key by earlier runs (None: none)."""
        _, version = await asyncio.to_thread(self._stored, record_type, key)
        return version

    def _stored(self, record_type: type[Record], key: str) -> tuple[bool, Any | None]:
        version = f'max("{record_type.version_column}")' if record_type.version_column else "NULL"
        ((count, highest),) = self._look_up(
            f'SELECT count(*), {version} FROM "{record_type.table}_history" WHERE {_key_sql(record_type)} = ?',
            [key],
        )
        return count > 0, highest

    def parse_json(self, response: Response) -> Any | None:
        """The response body as JSON, or None after recording a dead letter (also for a body that is
        JSON ``null``: no answer carries nothing)."""
        try:
            value = orjson.loads(response.body)
        except orjson.JSONDecodeError as exc:
            self.dead_letter(f"invalid_json: {exc}", response=response, payload=response.body)
            return None
        if value is None:
            self.dead_letter("invalid_json: the body is null", response=response, payload=response.body)
        return value

    def build(
        self, factory: Callable[..., R], payload: Any, *, response: Response, raw: bytes | None = None
    ) -> R | None:
        """``factory(payload)``, or None after recording a dead letter when it does not validate, or when
        its key is not the one the request asked for (``expected_key`` in the request's meta): an answer
        for another key must never replace that key's record (a wrong mirror, a hostile proxy)."""
        try:
            record = factory(payload)
            expected = response.meta.get(EXPECTED_KEY_META)
            if expected is not None and record.key_value() != expected:
                self.crawler.stats.inc_value(f"{self.source}/key_mismatch")
                self.dead_letter(
                    f"key_mismatch: asked for {expected!r}, the answer is {record.key_value()!r}"[:300],
                    response=response,
                    payload=response.body,
                )
                return None
            return record
        except (ValidationError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            reason = f"invalid_record: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            try:
                sample = raw if raw is not None else orjson.dumps(payload, default=str)
            except (TypeError, orjson.JSONEncodeError):
                sample = response.body
            self.dead_letter(reason, response=response, payload=sample)
            return None

    def errback(self, failure: Failure) -> Iterator[Any]:
        """A request that failed for good (after retries) becomes a dead letter, and its unit completes."""
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
        if request is not None:
            request.meta[FAILED_META] = True
            done = self.cursors.finished(request.meta)
            if done is not None:
                yield done

    #: the arguments of a crawl that builds without a network (for the checks over every source)
    smoke_arguments: ClassVar[dict[str, str]] = {}

    def smoke_requests(self) -> list[scrapy.Request]:
        """One request per callback (every ``parse_*`` method), built as the spider builds them:
        ``tests/test_sources.py`` answers each with an error, an empty, a garbage and an HTML body and
        checks that each ends as a dead letter, never as a crash."""
        raise NotImplementedError(f"{self.name}: list one request per callback in smoke_requests()")

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """The spider arguments that retry these dead letters, and the ids of those they cover.

        Used by ``scrapy replay-failed``; a source that can retry its dead letters overrides it.
        """
        return {}, []


def _key_sql(record_type: type[Record]) -> str:
    """A record type's key as one SQL string, as ``Record.key_value`` joins it."""
    return "concat_ws('/', " + ", ".join(f'"{column}"' for column in record_type.key) + ")"


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
