"""The base every source spider builds on.

A source spider is thin: it names its ``source``, declares its :class:`~crawler.policy.SourcePolicy`
and the record types it yields, builds requests and turns responses into records. The base gives it:

* its policy applied as Scrapy settings (``custom_settings``), overridable from the command line;
* ``**kwargs`` acceptance, so scrapyd's ``_job`` and other deployment arguments never break a crawl;
* :meth:`dead_letter`, :meth:`parse_json` and :meth:`build` — bad input becomes a dead letter in
  ``failed_messages`` and the crawl goes on (DESIGN §3.3);
* :meth:`errback`, the default errback: a request that failed after its retries is a dead letter;
* :class:`OrderedCheckpoints`, which releases cursor checkpoints only once all work before them is done.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import scrapy
from pydantic import ValidationError
from scrapy import signals
from scrapy.exceptions import UsageError
from scrapy.http import Response
from twisted.python.failure import Failure

from crawler.extensions.services import Services
from crawler.items import Record
from crawler.items.control import Checkpoint
from crawler.policy import SourcePolicy

logger = logging.getLogger(__name__)
R = TypeVar("R", bound=Record)
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
        return spider

    def names_and_mode(
        self, packages: str | None, packages_file: str | None, mode: str | None, modes: tuple[str, ...]
    ) -> tuple[list[str], str]:
        """Package names from ``-a packages=a,b`` and/or ``-a packages_file=…`` (one per line), and the
        mode: ``named`` when names are given, else ``mode`` (default ``incremental``), checked against ``modes``."""
        names = [n.strip() for n in (packages or "").split(",") if n.strip()]
        if packages_file:
            names += [n.strip() for n in Path(packages_file).read_text().splitlines() if n.strip()]
        if self.shard is not None:
            index, count = self.shard
            names = [n for n in dict.fromkeys(names) if zlib.crc32(n.encode()) % count == index]
        chosen = mode or ("named" if names or self.shard else "incremental")
        if chosen not in modes:
            raise UsageError(f"{self.name}: unknown mode {chosen!r}; use one of {', '.join(modes)}")
        if self.shard is not None and chosen != "named":
            raise UsageError(f"{self.name}: shard=i/n splits named packages; mode={chosen} reads one cursor")
        if chosen == "named" and not names and self.shard is None:
            others = "|".join(m for m in modes if m != "named")
            raise UsageError(f"{self.name}: give -a packages=name1,name2 (or packages_file=…), or -a mode={others}")
        return names, chosen

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

    A spider opens a *page* (e.g. one page of a changes feed) with the number of requests it spawned
    and the cursor value reached after it; each finished request calls :meth:`done`. A page's
    checkpoint is released when its own work and that of every earlier page is done, so the cursor
    never passes a record that has not been yielded yet.
    """

    def __init__(self, source: str, key: str = "default") -> None:
        self.source = source
        self.key = key
        self._pages: dict[int, list[Any]] = {}  # page id -> [remaining units, cursor value, cursor key]
        self._next_id = 0
        self._head = 0  # the oldest page not yet released
        self.outstanding = 0

    def open(self, value: str, units: int, key: str | None = None) -> tuple[int, list[Checkpoint]]:
        """Register a page; returns its id and any checkpoints released at once (a page with no work)."""
        page = self._next_id
        self._next_id += 1
        self._pages[page] = [units, value, key or self.key]
        self.outstanding += units
        return page, self._release()

    def done(self, page: int) -> list[Checkpoint]:
        """One unit of ``page`` finished; returns the checkpoints that are now safe to emit."""
        entry = self._pages[page]
        entry[0] -= 1
        self.outstanding -= 1
        return self._release() if entry[0] == 0 else []

    def _release(self) -> list[Checkpoint]:
        released: dict[str, Checkpoint] = {}  # per cursor key only the newest matters
        while self._head in self._pages and self._pages[self._head][0] <= 0:
            _, value, key = self._pages.pop(self._head)
            released.pop(key, None)
            released[key] = Checkpoint(self.source, value, key)
            self._head += 1
        return list(released.values())
