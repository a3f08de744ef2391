"""The PyPI source: projects by name, every project from the simple index, or only those whose serial
changed since the last run.

Arguments (``scrapy crawl pypi -a …``):

* ``packages=requests,Django`` or ``packages_file=names.txt``: fetch those projects.
* ``mode=full``: list every project from ``/simple/`` (PEP 691 JSON, or PEP 503 HTML on indexes that
  only serve HTML) and fetch each; resumable.
* ``mode=incremental``: diff the index's ``_last-serial`` of every project against the serials of the
  stored records and fetch only the projects that changed (and tombstone the ones that disappeared).

Metadata comes from ``/pypi/<name>/json``; on a mirror without the JSON API, from the simple project
page and the latest release's core metadata. Settings: declared in ``source.py`` (the README's PyPI
table is generated from it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
import pypi_simple
import scrapy
from scrapy.exceptions import CloseSpider, UsageError
from scrapy.http import Response

from crawler.spiders.base import EXPECTED_KEY_META, WORKER_MODE, SourceSpider
from crawler.spiders.pypi.records import PypiPackage, normalize_name
from crawler.spiders.pypi.source import SOURCE

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
_SERIAL_COMMENT = re.compile(rb"<!--\s*SERIAL\s+(\d+)\s*-->")
ACCEPT_SIMPLE = f"{SIMPLE_JSON}, text/html;q=0.1"
FULL_CURSOR = "full"
SERIAL_CURSOR = "serial"


class PypiSpider(SourceSpider):
    declaration = SOURCE

    def __init__(
        self, packages: str | None = None, packages_file: str | None = None, mode: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.names, self.mode = self.names_and_mode(packages, packages_file, mode)
        # an incremental run may rightly find nothing new (see crawler/monitors)
        self.monitor_min_items = 0 if self.mode in ("incremental", WORKER_MODE) else None
        self._pages: Iterator[list[tuple[str, int | None]]] | None = None
        self._index_serial: int | None = None
        self._not_requested = 0  # listed projects not requested yet (the backlog, with those under way)

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> PypiSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        base = resolve_pypi_url(spider.options["PYPI_URL"])
        spider.index_url = base + "simple/"
        spider.json_url = base + "pypi/{}/json"
        spider.json_api = spider.options["PYPI_JSON_API"]
        spider.page_size = spider.options["PYPI_PAGE_SIZE"]
        if crawler.settings.get("REDIS_URL") and spider.mode not in ("named", WORKER_MODE):
            # the index listing queues its pages as its own work completes, which one process must see
            raise UsageError("pypi: a distributed crawl (REDIS_URL) takes named projects: -a packages_file=…")
        return spider

    smoke_arguments = {"mode": "full"}

    def name_request(self, name: str) -> scrapy.Request:
        return self.project_request(name)

    def key_of_name(self, name: str) -> str:
        return normalize_name(name)

    def smoke_requests(self) -> list[scrapy.Request]:
        draft = PypiPackage.from_simple_page("tiny", [{"version": "1.0"}], ["1.0"], 7)
        metadata = scrapy.Request(
            self.index_url + "tiny/tiny-1.0.tar.gz.metadata",
            callback=self.parse_core_metadata,
            meta={"project": "tiny", "files": [], "versions": ["1.0"], "serial": 7, "display": "tiny", "draft": draft},
        )
        listing = scrapy.Request(self.index_url, callback=self.parse_index, errback=self.index_failed)
        return [listing, self.project_request("tiny"), self.simple_request("tiny", {"project": "tiny"}), metadata]

    async def start_listing(self) -> AsyncIterator[Any]:
        yield scrapy.Request(
            self.index_url,
            headers={"Accept": ACCEPT_SIMPLE},
            callback=self.parse_index,
            errback=self.index_failed,
            dont_filter=True,
        )

    # -- the index ------------------------------------------------------------------------------

    async def parse_index(self, response: Response) -> AsyncIterator[Any]:
        try:
            projects, self._index_serial = parse_index(response)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            self.dead_letter(f"invalid_index: {exc}", response=response, payload=response.body)
            raise CloseSpider("pypi_index_unreadable") from exc
        self.crawler.stats.set_value("pypi/index_projects", len(projects))
        if self.mode == "full":
            done = await self.services.in_meta_thread(self.services.meta.get_cursor, self.source, FULL_CURSOR)
            todo = sorted(
                (p for p in projects if not done or normalize_name(p[0]) > done), key=lambda p: normalize_name(p[0])
            )
        else:
            stored = await self.services.in_meta_thread(stored_serials, self.services.store)
            minimum = self.options["PYPI_MIN_INDEX_RATIO"] * len(stored)
            if len(projects) < minimum:
                # a truncated or partial answer would tombstone most of what is stored: refuse
                self.dead_letter(
                    f"index_implausible: {len(projects)} projects listed, {len(stored)} stored and live",
                    response=response,
                    payload=response.body[:2048],
                )
                raise CloseSpider("pypi_index_implausible")
            todo = []
            for display, serial in projects:
                # every listed project leaves `stored` (an HTML index, without serials, included): only
                # the projects the index no longer lists are tombstoned below
                stored_serial = stored.pop(normalize_name(display), -1)
                if serial is None or serial > stored_serial:
                    todo.append((display, serial))
            for name in stored:  # stored, alive, and no longer in the index: deleted
                self.crawler.stats.inc_value("pypi/deleted")
                yield PypiPackage.tombstone(name, self._index_serial)
        self.logger.info("pypi: %d of %d projects to fetch", len(todo), len(projects))
        self._not_requested = len(todo)
        self.crawler.stats.set_value("pypi/backlog", len(todo))
        self._pages = (todo[i : i + self.page_size] for i in range(0, len(todo), self.page_size))
        for request in self.next_page():
            yield request

    def more_work(self) -> Iterator[scrapy.Request]:
        if self._pages is not None and self.outstanding < self.page_size:
            yield from self.next_page()
        # what is left: the projects not yet requested and those under way
        self.crawler.stats.set_value("pypi/backlog", self._not_requested + self.outstanding)

    def next_page(self) -> list[scrapy.Request]:
        """The requests of the next page of projects; after the last one, the run's closing positions."""
        page_projects = next(self._pages, None) if self._pages is not None else None
        if page_projects is None:
            if self._pages is not None:
                self._pages = None
                self.sync_complete()
            return []
        self._not_requested -= len(page_projects)
        requests = [self.project_request(display, serial=serial) for display, serial in page_projects]
        # a full run resumes after the last name of the pages stored; an incremental one only orders them
        value = normalize_name(page_projects[-1][0]) if self.mode == "full" else None
        return self.cursor_page(value, requests, key=FULL_CURSOR, stream="index")

    def sync_complete(self) -> None:
        # Once everything before is stored: a full run clears its resume cursor, and both modes note
        # the index serial they reached (for status and lag).
        if self.mode == "full":
            self.cursor_page("", key=FULL_CURSOR, stream="index")
        if self._index_serial is not None:
            self.cursor_page(str(self._index_serial), key=SERIAL_CURSOR, stream="index")

    def index_failed(self, failure: Any) -> Iterator[Any]:
        yield from self.errback(failure)
        raise CloseSpider("pypi_index_unavailable")

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """Spider arguments that fetch again the projects of these dead letters, and the ids they cover."""
        names, ids = {}, []
        for row in failed:
            match = re.search(r"/(?:pypi|simple)/([^/]+)/", urlsplit(row.get("url") or "").path)
            if match:
                names[unquote(match[1])] = True
                ids.append(row["id"])
        return ({"packages": ",".join(names)} if names else {}), ids

    # -- projects -------------------------------------------------------------------------------

    def project_request(self, name: str, *, serial: int | None = None) -> scrapy.Request:
        meta = {
            "project": name,
            EXPECTED_KEY_META: normalize_name(name),
            "serial": serial,
            "handle_httpstatus_list": [404, 410],
        }
        if self.json_api == "false":
            return self.simple_request(name, meta)
        return scrapy.Request(
            self.json_url.format(quote(name, safe="")),
            callback=self.parse_json_api,
            headers={"Accept": "application/json"},
            meta=meta,
            # names are de-duplicated before they are requested (across workers: by the shared dupefilter)
            dont_filter=not self.dedupe_across_workers,
        )

    def simple_request(self, name: str, meta: dict[str, Any]) -> scrapy.Request:
        return scrapy.Request(
            self.index_url + quote(normalize_name(name), safe="") + "/",
            callback=self.parse_simple_project,
            headers={"Accept": ACCEPT_SIMPLE},
            meta=meta,
            dont_filter=True,
        )

    async def parse_json_api(self, response: Response) -> AsyncIterator[Any]:
        name = response.meta["project"]
        if response.status in (404, 410):
            if self.json_api == "auto" and not response.meta.get("tried_simple"):
                # a mirror without the JSON API, or a deleted project: the simple page tells which
                yield self.simple_request(name, {**response.meta, "tried_simple": True})
                return
            async for item in self.gone(name, response):
                yield item
            return
        doc = self.parse_json(response)
        if doc is None:
            return
        if not isinstance(doc, dict):
            self.dead_letter("invalid_project: not an object", response=response, payload=response.body)
            return
        serial = header_serial(response) or response.meta.get("serial")
        record = self.build(lambda d: PypiPackage.from_json_api(d, serial), doc, response=response, raw=response.body)
        if record is not None:
            yield record

    async def parse_simple_project(self, response: Response) -> AsyncIterator[Any]:
        name = response.meta["project"]
        if response.status in (404, 410):
            async for item in self.gone(name, response):
                yield item
            return
        try:
            project = parse_project_page(name, response)
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            self.dead_letter(f"invalid_project_page: {exc}", response=response, payload=response.body)
            return
        files = [file_dict(p) for p in project.packages if p.version]
        versions = project.versions or None
        serial = project.last_serial or page_serial(response) or header_serial(response) or response.meta.get("serial")
        draft = self.build(
            lambda _: PypiPackage.from_simple_page(name, files, versions, int(serial) if serial else None),
            None,
            response=response,
            raw=response.body,
        )
        if draft is None:
            return
        metadata_url = next(
            (p.metadata_url for p in reversed(project.packages) if p.version == draft.version and p.has_metadata), None
        )
        if metadata_url:
            yield scrapy.Request(
                metadata_url,
                callback=self.parse_core_metadata,
                meta={
                    "project": name,
                    "files": files,
                    "versions": versions,
                    "serial": draft.last_serial,
                    "display": project.project or name,
                    "draft": draft,
                    "handle_httpstatus_list": [404, 410],
                },
                dont_filter=True,
            )
            return
        yield draft

    def parse_core_metadata(self, response: Response) -> Iterator[Any]:
        meta = response.meta
        if response.status != 200:
            # the project page's own data is still good: keep it, and say what is missing
            self.dead_letter(f"metadata_unavailable: http_{response.status}", response=response, payload=response.body)
            yield meta["draft"]
            return
        record = self.build(
            lambda raw: PypiPackage.from_simple_page(
                meta["display"], meta["files"], meta["versions"], meta["serial"], raw
            ),
            response.body,
            response=response,
            raw=response.body,
        )
        if record is not None:
            yield record

    async def gone(self, name: str, response: Response) -> AsyncIterator[Any]:
        """A 404/410: a tombstone for a project stored before (or listed as changed by the index), else
        a dead letter (a name the index never had, e.g. a typo in a named crawl)."""
        self.crawler.stats.inc_value(f"pypi/http_{response.status}")
        key = normalize_name(name)
        serial = header_serial(response) or response.meta.get("serial")
        if self.mode == "named" and not await self.stored_before(PypiPackage, key):
            self.not_found(name, response)
            return
        if serial is None:
            # the latest record of a project is chosen by its serial: without one from the answer, the
            # deletion is ranked just after the last state stored
            stored = await self.stored_version(PypiPackage, key)
            serial = stored + 1 if stored is not None else None
        yield PypiPackage.tombstone(name, serial)


def parse_index(response: Response) -> tuple[list[tuple[str, int | None]], int | None]:
    """(display name, serial) of every project, and the index's serial, from JSON or HTML."""
    content_type = response.headers.get(b"Content-Type", b"").decode().split(";")[0].strip()
    if content_type == SIMPLE_JSON or response.body[:1] == b"{":
        data = orjson.loads(response.body)
        if not isinstance(data, dict) or not isinstance(data.get("projects"), list):
            raise ValueError("not a PEP 691 index (no projects list)")
        projects = [(p["name"], p.get("_last-serial")) for p in data["projects"]]
        serial = data.get("meta", {}).get("_last-serial")
        return projects, serial if isinstance(serial, int) else header_serial(response)
    page = pypi_simple.IndexPage.from_html(response.body)
    if page.repository_version is None and not page.projects:
        raise ValueError("not a PEP 503 index page (no repository version, no project links)")
    serial = int(page.last_serial) if page.last_serial else page_serial(response) or header_serial(response)
    return [(name, None) for name in page.projects], serial


def parse_project_page(name: str, response: Response) -> pypi_simple.ProjectPage:
    """The project page (PEP 691 JSON or PEP 503 HTML); ``ValueError`` for a body that is not one (an
    error page, a captive portal): such a body must not be stored as a live project without files."""
    content_type = response.headers.get(b"Content-Type", b"").decode().split(";")[0].strip()
    if content_type == SIMPLE_JSON or response.body[:1] == b"{":
        data = orjson.loads(response.body)
        if not isinstance(data, dict) or not isinstance(data.get("files"), list) or "name" not in data:
            raise ValueError("not a PEP 691 project page (no name and files)")
        return pypi_simple.ProjectPage.from_json_data(data, base_url=response.url)
    page = pypi_simple.ProjectPage.from_html(name, response.body, base_url=response.url)
    if page.repository_version is None and not page.packages:
        raise ValueError("not a PEP 503 project page (no repository version, no file links)")
    return page


def page_serial(response: Response) -> int | None:
    """The ``<!--SERIAL n-->`` comment of an HTML simple page (PyPI's own pages carry it)."""
    match = _SERIAL_COMMENT.search(response.body[-512:]) or _SERIAL_COMMENT.search(response.body)
    return int(match[1]) if match else None


def file_dict(package: pypi_simple.DistributionPackage) -> dict[str, Any]:
    """A distribution file as the record builder reads it (PEP 691 key names)."""
    return {
        "version": package.version,
        "yanked": package.is_yanked,
        "yanked_reason": package.yanked_reason,
        "upload-time": package.upload_time.isoformat() if package.upload_time else None,
        "requires-python": package.requires_python,
    }


def header_serial(response: Response) -> int | None:
    value = response.headers.get(b"X-PyPI-Last-Serial")
    return int(value) if value and value.isdigit() else None


def stored_serials(store: Any) -> dict[str, int]:
    """Serial of every stored, not deleted project (the latest record per project)."""
    from crawler.query.views import connect  # DuckDB is loaded only by the runs that query

    con = connect(store)
    rows = con.execute("SELECT name, last_serial FROM pypi_package WHERE NOT deleted").fetchall()
    return {name: serial if serial is not None else -1 for name, serial in rows}


def resolve_pypi_url(configured: str | None) -> str:
    """The index base URL (the one that serves ``simple/`` and ``pypi/``), ending with ``/``.

    The setting; else the user's pip configuration (``PIP_INDEX_URL``, then ``pip config list``), with
    a trailing ``simple/`` removed; else the pypi-simple library's published endpoint.
    """
    url = configured or os.environ.get("PIP_INDEX_URL") or _pip_configured_index() or pypi_simple.PYPI_SIMPLE_ENDPOINT
    url = url if url.endswith("/") else url + "/"
    return re.sub(r"simple/$", "", url)


def _pip_configured_index() -> str | None:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip().endswith(".index-url"):
            return value.strip().strip("'\"")
    return None
