"""The CZDS source: every approved zone file, downloaded at most once per zone date.

Arguments (``scrapy crawl czds -a …``):

* ``tlds=com,net``: only these zones of the approved ones (default: every approved zone).

A run logs in (:mod:`crawler.spiders.czds.auth`), lists the approved zones' download links, and asks
each zone's ``HEAD``: a zone whose ``Last-Modified`` is its saved cursor is not fetched again. Otherwise
the file streams to a local file (:mod:`crawler.downloaders.files`); its size must be the
``Content-Length`` and its gzip stream must end cleanly, or it is a dead letter and the zone's cursor
stays. A good file is kept raw under ``zones/<tld>/<tld>-<YYYY-MM-DD>.zone.gz``, parsed
(:mod:`crawler.spiders.czds.zonefile`) into ``domains`` records (Arrow tables, through the store
pipeline), its delegations written as the zone date's snapshot beside it, and compared with the last
snapshot into ``zone_changes`` (:mod:`crawler.spiders.czds.changes`). A ``zone_files`` record sums it
up. The zone's cursor moves to the file's ``Last-Modified`` once all of that is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import Response

from crawler.downloaders.files import (
    STREAM_TO_FILE_META,
    discard_download,
    downloaded_file,
    keep_file,
    remove_stale_downloads,
)
from crawler.pipelines.columnar import ArrowRecords
from crawler.spiders.base import SourceSpider
from crawler.spiders.czds import changes as diff
from crawler.spiders.czds import zonefile
from crawler.spiders.czds.auth import NEEDS_TOKEN_META
from crawler.spiders.czds.records import ZoneChange, ZoneDomain, ZoneFile
from crawler.spiders.czds.source import SOURCE

#: delegation tables the worker reads ahead of the pipelines (each ~20 k names of a registry file)
TABLES_AHEAD = 6
#: delegations per columnar item (the parse's tables joined)
ITEM_ROWS = 32_768
#: answers that name why a zone cannot be had; the other zones go on
REFUSALS = {
    401: "unauthorized: the access token was refused twice",
    403: "no_access: the zone does not exist, or access to it was not granted or has expired",
    409: "terms_not_accepted: accept the new terms and conditions in the CZDS portal",
}


class CzdsSpider(SourceSpider):
    declaration = SOURCE
    # a run that finds every zone unchanged rightly stores nothing
    monitor_min_items = 0

    def __init__(self, tlds: str | None = None, **kwargs: Any) -> None:
        """``tlds``: comma-separated zones to fetch (default: every approved zone)."""
        super().__init__(**kwargs)
        self.tlds = {t.strip().lower().strip(".") for t in (tlds or "").split(",") if t.strip()}
        self._worker: ThreadPoolExecutor | None = None

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> CzdsSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        options = spider.options
        missing = [name for name in ("CZDS_AUTH_URL", "CZDS_API_URL") if not options[name]]
        if missing:
            raise UsageError(f"czds: set {' and '.join(missing)} (see the README's CZDS section)")
        spider.links_url = options["CZDS_API_URL"].rstrip("/") + "/czds/downloads/links"
        spider.download_dir = options["CZDS_DOWNLOAD_DIR"] or os.path.join(tempfile.gettempdir(), "czds")
        spider.read_timeout = options["CZDS_READ_TIMEOUT"]
        return spider

    smoke_arguments: dict[str, str] = {}

    def smoke_requests(self) -> list[scrapy.Request]:
        url = "http://127.0.0.1:9/czds/downloads/example.zone"
        return [self.links_request(), self.head_request(url, "example"), self.zone_request(url, "example", None)]

    async def start_listing(self) -> AsyncIterator[Any]:
        removed = remove_stale_downloads(self.download_dir)
        if removed:
            self.logger.info("czds: removed %d partial downloads left by an earlier run", removed)
        yield self.links_request()

    # -- requests -------------------------------------------------------------------------------------

    def links_request(self) -> scrapy.Request:
        return scrapy.Request(
            self.links_url,
            headers={"Accept": "application/json"},
            callback=self.parse_links,
            errback=self.errback,
            meta={NEEDS_TOKEN_META: True},
            dont_filter=True,
        )

    def head_request(self, url: str, tld: str) -> scrapy.Request:
        return scrapy.Request(
            url,
            method="HEAD",
            callback=self.parse_head,
            errback=self.errback,
            cb_kwargs={"tld": tld},
            # a HEAD announces the zone's size (.com: about 4.6 GB): no size cap applies, nothing is read
            meta={
                NEEDS_TOKEN_META: True,
                "handle_httpstatus_list": list(REFUSALS),
                "download_maxsize": 0,
                "download_warnsize": 0,
            },
            dont_filter=True,
        )

    def zone_request(self, url: str, tld: str, expected_bytes: int | None) -> scrapy.Request:
        return scrapy.Request(
            url,
            callback=self.parse_zone,
            errback=self.errback,
            cb_kwargs={"tld": tld, "expected_bytes": expected_bytes},
            meta={
                NEEDS_TOKEN_META: True,
                STREAM_TO_FILE_META: self.download_dir,
                "download_timeout": self.read_timeout,
                "download_maxsize": 0,
                "download_warnsize": 0,
                "handle_httpstatus_list": list(REFUSALS),
            },
            dont_filter=True,
        )

    # -- callbacks ------------------------------------------------------------------------------------

    def parse_links(self, response: Response) -> Iterator[Any]:
        links = self.parse_json(response)
        if links is None:
            return
        if not isinstance(links, list) or not all(isinstance(link, str) for link in links):
            self.dead_letter("invalid_links: not a list of URLs", response=response, payload=response.body)
            return
        zones = {zone_name(link): link for link in links if zone_name(link)}
        self.crawler.stats.set_value("czds/approved_zones", len(zones))
        for tld in sorted(self.tlds - set(zones)):
            self.dead_letter(f"not_approved: {tld} is not among the zones this account may download", url=response.url)
        for tld, link in sorted(zones.items()):
            if not self.tlds or tld in self.tlds:
                yield self.head_request(link, tld)

    async def parse_head(self, response: Response, tld: str) -> AsyncIterator[Any]:
        if response.status in REFUSALS:
            self.refused(response, tld)
            return
        modified = last_modified(response)
        if modified is None:
            self.dead_letter("no_last_modified: the zone's HEAD has no Last-Modified", response=response)
            return
        cursor = await self.services.in_meta_thread(self.services.meta.get_cursor, self.source, tld)
        if cursor == modified.isoformat():
            self.crawler.stats.inc_value("czds/unchanged")
            self.logger.info("czds: %s unchanged since %s: not downloaded", tld, cursor)
            return
        yield self.zone_request(response.url, tld, content_length(response))

    async def parse_zone(self, response: Response, tld: str, expected_bytes: int | None) -> AsyncIterator[Any]:
        if response.status in REFUSALS:
            self.refused(response, tld)
            return
        download = downloaded_file(response)
        if download is None:
            self.dead_letter("no_download: the zone's body was not streamed to a file", response=response)
            return
        path, size = download
        snapshot = f"{path}.snapshot.parquet"
        try:
            async for item in self._read_zone(response, tld, expected_bytes, path, size, snapshot):
                yield item
        finally:
            discard_download(path)
            discard_download(snapshot)

    async def _read_zone(
        self, response: Response, tld: str, expected_bytes: int | None, path: str, size: int, snapshot: str
    ) -> AsyncIterator[Any]:
        modified = last_modified(response)
        if "dataloss" in response.flags:
            self.dead_letter(f"truncated_download: the connection closed after {size} bytes", response=response)
            return
        for announced in {content_length(response), expected_bytes} - {None}:
            if size != announced:
                self.dead_letter(f"wrong_length: {size} bytes received, Content-Length {announced}", response=response)
                return
        if modified is None:
            self.dead_letter("no_last_modified: the zone file has no Last-Modified", response=response)
            return
        try:
            # before any record of it is stored: a corrupt file must leave nothing behind (one pass of
            # ISA-L, about an eighth of the parse's CPU)
            await self.in_worker(zonefile.verify_gzip, path)
        except (EOFError, OSError, ValueError) as exc:
            self.dead_letter(f"corrupt_gzip: {type(exc).__name__}: {str(exc)[:200]}", response=response)
            return
        zone_date = modified.date().isoformat()
        # the zone's position: once its records, changes and summary below are stored
        self.checkpoint(response, modified.isoformat(), key=tld, hold_on_failure=True)
        store = self.services.store
        raw = diff.raw_key(tld, zone_date)
        # a remote store's copy of the raw file is uploaded while the zone is parsed (a local one links
        # the file once it passed); it is deleted again if the file fails the parse's own gzip check
        upload = (
            asyncio.ensure_future(asyncio.to_thread(store.put_file, raw, path, "application/gzip"))
            if store.local_path(raw) is None
            else None
        )
        stats = zonefile.ZoneStats()
        try:
            async for table in self._parse(path, tld, snapshot, stats):
                yield ArrowRecords(ZoneDomain, with_constants(table, tld=tld, zone_date=zone_date))
        except (EOFError, OSError, ValueError) as exc:
            # the parse reads the gzip stream to its end too: a file that changed on disk since it was
            # checked fails there, and neither the raw file nor the snapshot is kept
            self.dead_letter(f"corrupt_gzip: {type(exc).__name__}: {str(exc)[:200]}", response=response)
            if upload is not None:
                with contextlib.suppress(Exception):
                    await upload
                await self.in_worker(store.delete, [raw])
            return
        except BaseException:
            if upload is not None:
                with contextlib.suppress(Exception):
                    await upload
            raise
        if upload is not None:
            await upload
        else:
            await self.in_worker(keep_file, store, raw, path, "application/gzip")
        if stats.malformed:
            self.crawler.stats.inc_value("czds/malformed_lines", stats.malformed)
            self.dead_letter(
                f"malformed_lines: {stats.malformed} lines of the {tld} zone could not be read",
                url=response.url,
                payload="\n".join(stats.samples),
            )
        await self.in_worker(
            keep_file, store, diff.snapshot_key(tld, zone_date), snapshot, "application/vnd.apache.parquet"
        )

        previous = await self.in_worker(diff.previous_snapshot, store, tld, zone_date)
        added = removed = None
        if previous is not None:
            added = removed = 0
            old_key, previous_date = previous
            old, remove_after = await self.in_worker(diff.fetch_local, store, old_key, self.download_dir)
            try:
                batches = diff.changes(snapshot, old, spill_directory=self.download_dir)
                while (batch := await self.in_worker(next, batches, None)) is not None:
                    counts = batch.column("change").value_counts().to_pylist()
                    for entry in counts:
                        if entry["values"] == "added":
                            added += entry["counts"]
                        else:
                            removed += entry["counts"]
                    table = with_constants(
                        pa.Table.from_batches([batch]), tld=tld, zone_date=zone_date, previous_date=previous_date
                    )
                    yield ArrowRecords(ZoneChange, table)
            finally:
                if remove_after:
                    discard_download(old)
        else:
            previous_date = None
        self.crawler.stats.inc_value("czds/zones_read")
        self.crawler.stats.inc_value("czds/domains", stats.domains)
        yield self.build(
            ZoneFile.model_validate,
            dict(
                tld=tld,
                zone_date=zone_date,
                last_modified=modified,
                url=response.url,
                raw_key=raw,
                gzip_bytes=size,
                unpacked_bytes=stats.unpacked_bytes,
                syntax=stats.syntax,
                records=stats.records,
                domains=stats.domains,
                signed_domains=stats.signed,
                record_types=dict(stats.types),
                malformed_lines=stats.malformed,
                previous_date=previous_date,
                added=added,
                removed=removed,
            ),
            response=response,
        )

    async def _parse(self, path: str, tld: str, snapshot: str, stats: zonefile.ZoneStats) -> AsyncIterator[pa.Table]:
        """The zone's delegation tables, each also written to the snapshot at ``snapshot``. The worker
        reads up to ``TABLES_AHEAD`` tables ahead of the pipelines, so it goes on parsing while the store
        writes a batch (with one table ahead it waited for every write: a 50 M-record zone took 30 s where
        the parse alone takes 12)."""
        tables = zonefile.delegations(path, tld + ".", stats)
        writer = diff.SnapshotWriter(snapshot, self.download_dir, zone=tld)
        ahead: deque[asyncio.Future[pa.Table | None]] = deque()

        def read_more() -> None:
            while len(ahead) < TABLES_AHEAD:
                ahead.append(asyncio.ensure_future(self.in_worker(_next_written, tables, writer)))

        joined: list[pa.Table] = []
        rows = 0
        try:
            read_more()
            while (table := await ahead.popleft()) is not None:
                read_more()
                # tables of ~10 k names joined into items of ITEM_ROWS: each item costs the pipelines
                # the same checks and stamps whatever its size
                joined.append(table)
                rows += table.num_rows
                if rows >= ITEM_ROWS:
                    yield pa.concat_tables(joined)
                    joined, rows = [], 0
        except BaseException:
            for pending in ahead:  # never close the snapshot while the worker writes to it
                with contextlib.suppress(Exception):
                    await pending
            await self.in_worker(tables.close)
            await self.in_worker(writer.abort)
            raise
        for pending in ahead:
            await pending  # reads past the end: None
        await self.in_worker(writer.close)
        if joined:
            yield pa.concat_tables(joined)

    async def in_worker(self, func: Any, *args: Any) -> Any:
        """``func(*args)`` on the spider's one worker thread: reading a zone is CPU work that must not
        hold the event loop, and one thread keeps Arrow's allocations in one heap (a pool of threads
        each kept its own, and the peak memory doubled)."""
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="czds-zone")
        return await asyncio.get_running_loop().run_in_executor(self._worker, func, *args)

    def closed(self, reason: str) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False)

    def refused(self, response: Response, tld: str) -> None:
        self.crawler.stats.inc_value(f"czds/refused/{response.status}")
        self.dead_letter(f"{REFUSALS[response.status]} ({tld})", response=response, payload=response.body)


def _next_written(tables: Iterator[pa.Table], writer: diff.SnapshotWriter) -> pa.Table | None:
    """The next delegation table, also written to the snapshot (in a worker thread)."""
    table = next(tables, None)
    if table is not None:
        writer.write(table)
    return table


def with_constants(table: pa.Table, **columns: str) -> pa.Table:
    """The table with columns holding one value in every row."""
    for name, value in columns.items():
        table = table.append_column(name, pa.repeat(pa.scalar(value, pa.string()), table.num_rows))
    return table


def zone_name(url: str) -> str | None:
    """The zone a download link is for (``…/downloads/com.zone`` → ``com``)."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]).lower()
    if not name.endswith(".zone") or len(name) <= len(".zone"):
        return None
    return name.removesuffix(".zone")


def last_modified(response: Response) -> datetime | None:
    value = response.headers.get("Last-Modified")
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value.decode("latin-1").replace(",", ", ", 1).replace(",  ", ", "))
    except (TypeError, ValueError, IndexError):
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def content_length(response: Response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
