"""The npm source: packuments by name, and the replication ``_changes`` feed (incremental and full).

Arguments (``scrapy crawl npm -a …``):

* ``packages=react,@types/node`` or ``packages_file=names.txt`` (one per line): fetch those packages.
* ``mode=incremental``: follow the changes feed from the saved cursor (``-a since=SEQ`` overrides it).
* ``mode=full``: every package, by replaying the feed from the start; resumable, and on completion it
  sets the incremental cursor.
* ``mode=worker`` (with ``REDIS_URL``): take work from a distributed crawl started elsewhere. Workers of
  a feed mode that did not start the run behave the same way (see :mod:`crawler.distributed`).

Settings: declared in ``source.py`` (the README's npm table is generated from it).
"""

from __future__ import annotations

import asyncio
import configparser
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import scrapy
from scrapy.exceptions import CloseSpider, UsageError
from scrapy.http import Response

from crawler.spiders.base import EXPECTED_KEY_META, WORKER_MODE, SourceSpider
from crawler.spiders.npm.records import NpmPackage
from crawler.spiders.npm.source import SOURCE

FULL_CURSOR = "full"
FEED_PAGE_MAX = 10_000  # the feed's own cap on `limit`


class NpmSpider(SourceSpider):
    declaration = SOURCE

    def __init__(
        self,
        packages: str | None = None,
        packages_file: str | None = None,
        mode: str | None = None,
        since: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.names, self.mode = self.names_and_mode(packages, packages_file, mode)
        self.since_arg = since
        # an incremental run may rightly find nothing new (see crawler/monitors)
        self.monitor_min_items = 0 if self.mode in ("incremental", WORKER_MODE) else None
        self._feed_pending = 0
        self.cursor_key = FULL_CURSOR if self.mode == "full" else "default"
        self._deferred_page: scrapy.Request | None = None
        # A package the feed announces on several pages is fetched once per run, at its newest rev:
        # the generation fetched (and stored) this run, and the newest announced for a fetch under way.
        self._fetched: dict[str, int] = {}
        self._pending: dict[str, int] = {}

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> NpmSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        options = spider.options
        spider.registry_url = resolve_registry_url(options["NPM_REGISTRY_URL"])
        spider.changes_url = options["NPM_CHANGES_URL"]
        if spider.mode in ("incremental", "full") and not spider.changes_url:
            raise UsageError(
                f"npm: mode={spider.mode} follows the replication feed: set NPM_CHANGES_URL to its _changes URL"
            )
        spider.page_size = min(options["NPM_CHANGES_PAGE_SIZE"], FEED_PAGE_MAX)
        spider.stale_retries = options["NPM_STALE_RETRIES"]
        spider.stale_delay = options["NPM_STALE_RETRY_DELAY"]
        spider.on_seq_reset = options["NPM_SEQ_RESET"]
        return spider

    smoke_arguments = {"mode": "incremental"}

    def name_request(self, name: str) -> scrapy.Request:
        return self.packument_request(name)

    def smoke_requests(self) -> list[scrapy.Request]:
        return [self.changes_request("0"), self.packument_request("left-pad", change_rev="2-a")]

    async def start_listing(self) -> AsyncIterator[Any]:
        if self.distributed is not None and not self.distributed.coordinator.claim("feed"):
            # another worker of this run reads the feed; this one takes from the shared queue, and may
            # rightly find little left
            self.monitor_min_items = 0
            return
        since = self.since_arg
        if since is None:
            since = await self.services.in_meta_thread(self.services.meta.get_cursor, self.source, self.cursor_key)
        yield self.changes_request(since or "0")

    # -- the changes feed ---------------------------------------------------------------------

    def changes_request(self, since: str, mode: str | None = None, feed_url: str | None = None) -> scrapy.Request:
        """A page of the feed at ``feed_url`` (default NPM_CHANGES_URL), read for ``mode`` (default this
        run's). In a distributed crawl any worker may read the next page: the request carries both. Each
        page is new work: its position does not wait for the pages after it."""
        query = urlencode({"since": since, "limit": self.page_size})
        return self.independent(
            scrapy.Request(
                f"{feed_url or self.changes_url}?{query}",
                callback=self.parse_changes,
                errback=self.changes_failed,
                cb_kwargs={"since": since, "mode": mode or self.mode},
                dont_filter=True,
                priority=-1,  # finish the packuments already queued before reading further
            )
        )

    def parse_changes(self, response: Response, since: str, mode: str | None = None) -> Iterator[Any]:
        mode = mode or self.mode
        feed_url = response.url.split("?", 1)[0]
        feed = self.parse_json(response)
        if not isinstance(feed, dict) or not isinstance(feed.get("results"), list):
            if feed is not None:
                self.dead_letter("invalid_changes_page", response=response, payload=response.body)
            raise CloseSpider("npm_changes_unreadable")
        last_seq = str(feed.get("last_seq", since))
        if seq_went_backwards(since, last_seq):
            yield from self.seq_reset(since, last_seq, response, mode)
            return
        self.crawler.stats.inc_value("npm/changes_pages")
        # what is left to do: the feed's own count after this page, plus the packuments not yet done
        self._feed_pending = int(feed.get("pending") or 0)
        self.crawler.stats.set_value("npm/backlog", self._feed_pending + self.outstanding)
        # The position after this page covers its tombstones and packuments (everything yielded below).
        self.checkpoint(response, last_seq, key=FULL_CURSOR if mode == "full" else "default", stream="feed")
        # The same package can change several times in a page: fetch it once, at its newest rev.
        latest: dict[str, dict[str, Any]] = {}
        for change in feed["results"]:
            name = change.get("id") if isinstance(change, dict) else None
            if isinstance(name, str) and not name.startswith("_design/"):
                latest.pop(name, None)
                latest[name] = change
        for change in latest.values():
            if change.get("deleted"):
                self.crawler.stats.inc_value("npm/deleted")
                yield NpmPackage.tombstone(change["id"])
            else:
                revs = change.get("changes") or [{}]
                rev = (revs[-1] or {}).get("rev")
                if self.fetched_this_run(change["id"], rev):
                    continue
                yield self.packument_request(change["id"], change_rev=rev)
        if (feed["results"] and int(feed.get("pending") or 0) > 0) or len(feed["results"]) >= self.page_size:
            next_page = self.changes_request(last_seq, mode, feed_url)
            # Back-pressure: read further only while fewer than two pages of packuments are queued.
            if self.outstanding > 2 * self.page_size:
                self._deferred_page = next_page
            else:
                yield next_page
        elif mode == "full":
            self.logger.info("npm: full sync reached the head of the feed at seq %s", last_seq)
            # Once every packument before it is stored, the incremental cursor may start here and the
            # full cursor is cleared, so the next full run starts over.
            self.cursor_page("", key=FULL_CURSOR, stream="feed")
            self.cursor_page(last_seq, key="default", stream="feed")

    def fetched_this_run(self, name: str, rev: str | None) -> bool:
        """Whether this change needs no request of its own: this run stored the package at a rev at least
        as new, or a fetch of it is under way (then it must bring this rev: see :meth:`is_stale`).

        The cursor rule holds: the earlier request belongs to an earlier page of the feed, and a page's
        position is saved only after every earlier page's work is stored. In a distributed crawl another
        worker may answer the request under way, so only what this worker stored counts there."""
        generation = rev_generation(rev)
        if generation is None:
            return False
        fetched = self._fetched.get(name)
        if fetched is not None and fetched >= generation:
            self.crawler.stats.inc_value("npm/fetched_once")
            return True
        if name in self._pending and self.distributed is None:
            self._pending[name] = max(self._pending[name], generation)
            self.crawler.stats.inc_value("npm/fetched_once")
            return True
        if self.distributed is None:
            self._pending[name] = generation
        return False

    def more_work(self) -> Iterator[scrapy.Request]:
        if self.mode not in ("incremental", "full"):
            return  # named packages: no feed, no backlog to report
        self.crawler.stats.set_value("npm/backlog", self._feed_pending + self.outstanding)
        if self._deferred_page is not None and self.outstanding <= self.page_size:
            yield self._deferred_page
            self._deferred_page = None

    def seq_reset(self, since: str, last_seq: str, response: Response, mode: str) -> Iterator[Any]:
        self.crawler.stats.inc_value("npm/seq_resets")
        message = f"seq_reset: feed went back from {since} to {last_seq}"
        self.logger.error("npm: the changes feed's sequence went backwards (%s -> %s)", since, last_seq)
        self.dead_letter(message, response=response, payload=response.body[:2048])
        if self.on_seq_reset == "fail":
            raise CloseSpider("npm_seq_reset")
        # Nothing is lost only if the new sequence is replayed from its start.
        yield self.changes_request("0", mode, response.url.split("?", 1)[0])

    def changes_failed(self, failure: Any) -> Iterator[Any]:
        yield from self.errback(failure)
        raise CloseSpider("npm_changes_unavailable")

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """Spider arguments that fetch again the packages of these dead letters, and the ids they cover."""
        names, ids = {}, []
        for row in failed:
            path = urlsplit(row.get("url") or "").path
            if path and "_changes" not in path:
                names[unquote(path.rsplit("/", 1)[-1])] = True  # a scoped name's slash is encoded
                ids.append(row["id"])
        return ({"packages": ",".join(names)} if names else {}), ids

    # -- packuments -----------------------------------------------------------------------------

    def packument_request(self, name: str, *, change_rev: str | None = None, attempt: int = 0) -> scrapy.Request:
        return scrapy.Request(
            self.registry_url + quote(name, safe="@"),
            callback=self.parse_packument,
            errback=self.packument_failed,
            headers={"Accept": "application/json"},
            meta={
                EXPECTED_KEY_META: name,
                "package": name,
                "change_rev": change_rev,
                "stale_attempt": attempt,
                "handle_httpstatus_list": [404, 410],
            },
            # names are de-duplicated before they are requested (across workers: by the shared dupefilter);
            # a request of a feed page is never filtered (crawler.extensions.cursors)
            dont_filter=not self.dedupe_across_workers,
        )

    def packument_failed(self, failure: Any) -> Iterator[Any]:
        self._pending.pop(failure.request.meta["package"], None)  # a later page announcing it fetches it
        yield from self.errback(failure)

    async def parse_packument(self, response: Response) -> AsyncIterator[Any]:
        name = response.meta["package"]
        if response.status in (404, 410):
            self._pending.pop(name, None)
            self.crawler.stats.inc_value(f"npm/http_{response.status}")
            # a change the feed reported is a deletion; a name asked for by hand may be a typo
            if response.meta.get("change_rev") is not None or await self.stored_before(NpmPackage, name):
                yield NpmPackage.tombstone(name)
            else:
                self.not_found(name, response)
            return
        doc = self.parse_json(response)
        if not isinstance(doc, dict):
            self._pending.pop(name, None)
            if doc is not None:
                self.dead_letter("invalid_packument: not an object", response=response, payload=response.body)
            return
        if self.is_stale(doc, response):
            await asyncio.sleep(self.stale_delay)
            yield self.packument_request(
                name, change_rev=response.meta["change_rev"], attempt=response.meta["stale_attempt"] + 1
            )
            return
        self._pending.pop(name, None)
        if record := self.build(NpmPackage.from_packument, doc, response=response, raw=response.body):
            generation = rev_generation(doc.get("_rev"))
            if generation is not None:
                self._fetched[name] = generation
            yield record

    def is_stale(self, doc: dict[str, Any], response: Response) -> bool:
        """The CDN may serve a packument older than the change just seen: retry it a few times."""
        # the newest rev the feed announced for it so far, on this page or a later one
        announced = [rev_generation(response.meta.get("change_rev")), self._pending.get(response.meta["package"])]
        wanted = max((g for g in announced if g is not None), default=None)
        have = rev_generation(doc.get("_rev"))
        if wanted is None or have is None or have >= wanted:
            return False
        if response.meta["stale_attempt"] >= self.stale_retries:
            self.crawler.stats.inc_value("npm/stale_kept")
            return False
        self.crawler.stats.inc_value("npm/stale_refetched")
        return True


def rev_generation(rev: Any) -> int | None:
    """The generation number of a CouchDB revision ``"N-hash"``."""
    if not isinstance(rev, str):
        return None
    head = rev.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def seq_went_backwards(since: str, last_seq: str) -> bool:
    """True when the feed answers a ``since`` with an older position: npm reset its sequence."""

    def number(seq: str) -> int | None:
        head = str(seq).split("-", 1)[0]
        return int(head) if head.isdigit() else None

    before, after = number(since), number(last_seq)
    return before is not None and after is not None and after < before


def resolve_registry_url(configured: str | None) -> str:
    """The registry base URL: the setting, else the user's npm configuration; always ends with ``/``.

    npm's own precedence: the ``npm_config_registry`` environment variable, the project and user
    ``.npmrc`` files, then whatever ``npm config get registry`` answers.
    """
    url = configured or _npm_configured_registry()
    if not url:
        raise UsageError(
            "npm: no registry URL. Set NPM_REGISTRY_URL (setting or environment variable), "
            "or configure npm's `registry` (npm config set registry <url>)."
        )
    return url if url.endswith("/") else url + "/"


def _npm_configured_registry() -> str | None:
    for variable in ("npm_config_registry", "NPM_CONFIG_REGISTRY"):
        if os.environ.get(variable):
            return os.environ[variable]
    userconfig = os.environ.get("NPM_CONFIG_USERCONFIG") or os.environ.get("npm_config_userconfig")
    for npmrc in (Path(".npmrc"), Path(userconfig) if userconfig else Path.home() / ".npmrc"):
        value = _read_npmrc(npmrc)
        if value:
            return value
    npm = shutil.which("npm")
    if npm:
        try:
            out = subprocess.run([npm, "config", "get", "registry"], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        value = out.stdout.strip()
        if out.returncode == 0 and value.startswith(("http://", "https://")):
            return value
    return None


def _read_npmrc(path: Path) -> str | None:
    try:
        content = path.read_text()
    except OSError:
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string("[npmrc]\n" + content)
    except configparser.Error:
        return None
    value = parser.get("npmrc", "registry", fallback=None)
    return value.strip().strip('"') if value else None
