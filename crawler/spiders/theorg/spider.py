"""The TheOrg source: a company's org chart, read from its page over plain HTTP, in a browser when needed.

Arguments (``scrapy crawl theorg -a …``):

* ``orgs=acme,globex`` or ``orgs_file=slugs.txt`` (one per line): those companies (``<THEORG_URL>org/<slug>``).
* ``domains=acme.com,globex.io``: find each company by its domain through the site's own search page,
  then read its page.
* ``from=<source or namespace>``: the companies behind the domains other sources stored
  (:func:`crawler.inputs.stored_domains`).

A page is read over plain HTTP first: ``__NEXT_DATA__`` (Pages Router), then App Router flight data, then
JSON-LD. Only a page that names a company but holds no chart (its chart is filled in by scripts) is
rendered again in Chromium (:mod:`crawler.spiders.theorg.browser`). A page of neither shape, or whose data
lost its expected structure, is a dead letter with the reason, never a record of nulls. Companies stored
within 30 days (the policy's freshness TTL) are not fetched again.

Settings: declared in ``source.py`` (the README's TheOrg table is generated from it).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import scrapy
from scrapy.exceptions import UsageError
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy_playwright.page import PageMethod

from crawler.config import SettingError
from crawler.spiders.base import EXPECTED_KEY_META, WORKER_MODE, SourceSpider
from crawler.spiders.theorg import pages
from crawler.spiders.theorg.browser import chromium_path, playwright_settings
from crawler.spiders.theorg.records import OrgCompany
from crawler.spiders.theorg.source import SOURCE

#: run in the rendered page: wait for the chart, expand every collapsed branch, scroll to the end (bounded)
SHOW_WHOLE_CHART = """async (timeoutMs) => {
  const deadline = Date.now() + timeoutMs;
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  while (!document.querySelector('[data-position-id]') && Date.now() < deadline) await sleep(25);
  for (let round = 0; round < 100 && Date.now() < deadline; round++) {
    window.scrollTo(0, document.body.scrollHeight);
    const collapsed = [...document.querySelectorAll('[data-expand]:not([data-expanded])')];
    if (!collapsed.length) break;
    for (const button of collapsed) { button.setAttribute('data-expanded', ''); button.click(); }
    await sleep(25);
  }
}"""


class TheorgSpider(SourceSpider):
    declaration = SOURCE

    def __init__(
        self,
        orgs: str | None = None,
        orgs_file: str | None = None,
        domains: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``orgs``: company slugs, comma-separated; ``orgs_file``: a file of slugs, one per line;
        ``domains``: company domains, comma-separated, resolved through the site's search page;
        ``from`` (a keyword argument): a source or namespace whose stored domains to resolve."""
        from_selector = kwargs.pop("from", None)
        super().__init__(**kwargs)
        slugs = [s.strip().lower() for s in (orgs or "").split(",") if s.strip()]
        if orgs_file:
            slugs += [s.strip().lower() for s in Path(orgs_file).read_text().splitlines() if s.strip()]
        self.domains = [d.strip().lower() for d in (domains or "").split(",") if d.strip()]
        self.from_selector: str | None = from_selector
        if mode == WORKER_MODE or slugs:
            self.names, self.mode = self.names_and_mode(",".join(slugs) or None, None, mode)
        elif self.domains or from_selector:
            self.names, self.mode = [], "named"
        else:
            raise UsageError("theorg: give -a orgs=slug1,slug2 (or orgs_file=…), -a domains=… or -a from=<source>")

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        """The source's components, and the browser's: scrapy-playwright with Debian's Chromium and a
        memory watch that counts the browser processes. Without a browser (``THEORG_BROWSER=false`` or no
        Chromium) the project's own HTTP handlers stay and no browser is started."""
        super().update_settings(settings)
        from crawler.settings import DOWNLOAD_HANDLERS

        try:
            options = SOURCE.read_settings(settings)
        except SettingError:
            return  # from_crawler reports it, before the crawl starts
        executable = chromium_path(options["THEORG_CHROMIUM_PATH"]) if options["THEORG_BROWSER"] else None
        settings.set("THEORG_BROWSER_ENABLED", executable is not None, priority="spider")
        if executable is None:
            handlers = {**settings.getdict("DOWNLOAD_HANDLERS"), **DOWNLOAD_HANDLERS}
            settings.set("DOWNLOAD_HANDLERS", handlers, priority="spider")
            return
        # one browser driver: the other scheme (not the site's) keeps the project's handler
        scheme = (options["THEORG_URL"] or "https://").split(":", 1)[0]
        handlers = settings.getdict("DOWNLOAD_HANDLERS")
        handlers.update({other: DOWNLOAD_HANDLERS[other] for other in ("http", "https") if other != scheme})
        settings.set("DOWNLOAD_HANDLERS", handlers, priority="spider")
        for name, value in playwright_settings(
            executable,
            options["THEORG_BROWSER_CONTEXTS"],
            options["THEORG_BROWSER_TIMEOUT"],
            options["THEORG_MEMORY_LIMIT_MB"],
        ).items():
            settings.set(name, value, priority="spider")
        # a page that failed in the browser (a proxy refused, a navigation timed out) is retried too
        retried = [*settings.getlist("RETRY_EXCEPTIONS"), "playwright.async_api.Error"]
        settings.set("RETRY_EXCEPTIONS", retried, priority="spider")
        extensions = {
            **settings.getdict("EXTENSIONS"),
            "scrapy.extensions.memusage.MemoryUsage": None,
            "crawler.spiders.theorg.browser.ProcessTreeMemoryUsage": 0,
        }
        settings.set("EXTENSIONS", extensions, priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Any, *args: Any, **kwargs: Any) -> TheorgSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        base = spider.options["THEORG_URL"]
        if not base:
            raise UsageError("theorg: set THEORG_URL to the site's base URL (setting or environment variable)")
        spider.base_url = base if base.endswith("/") else base + "/"
        spider.browser_enabled = crawler.settings.getbool("THEORG_BROWSER_ENABLED")
        if spider.options["THEORG_BROWSER"] and not spider.browser_enabled:
            spider.logger.warning("theorg: no Chromium found: pages whose chart needs a browser become dead letters")
        spider.browser_timeout = spider.options["THEORG_BROWSER_TIMEOUT"]
        return spider

    smoke_arguments = {"orgs": "acme"}

    def smoke_requests(self) -> list[scrapy.Request]:
        return [
            self.org_request("acme"),
            self.browser_request("acme", self.org_url("acme")),
            self.search_request("acme.com"),
        ]

    async def start(self) -> AsyncIterator[Any]:
        async for request in super().start():
            yield request
        if self.mode != "named":
            return
        stored = await asyncio.to_thread(list, self.stored_domains())  # DuckDB: off the reactor's thread
        for domain in dict.fromkeys([*self.domains, *stored]):
            await self.room_in_scheduler()
            yield self.search_request(domain)

    def stored_domains(self) -> Iterator[str]:
        """The domains other sources stored (``-a from=…``)."""
        if not self.from_selector:
            return iter(())
        from crawler.inputs import stored_domains

        return stored_domains(self.crawler.settings, self.from_selector)

    @classmethod
    def replay_arguments(cls, failed: list[dict[str, Any]]) -> tuple[dict[str, str], list[int]]:
        """Arguments that fetch again the companies (``/org/<slug>``) and domains (``/search?q=``) of
        these dead letters, and the ids they cover."""
        slugs: dict[str, bool] = {}
        domains: dict[str, bool] = {}
        ids = []
        for row in failed:
            parts = urlsplit(row.get("url") or "")
            segments = parts.path.rstrip("/").split("/")
            if len(segments) >= 2 and segments[-2] == "org" and segments[-1]:
                slugs[unquote(segments[-1])] = True
            elif segments[-1] == "search" and (query := parse_qs(parts.query).get("q")):
                domains[query[0]] = True
            else:
                continue
            ids.append(row["id"])
        arguments = {"orgs": ",".join(slugs), "domains": ",".join(domains)}
        return {name: value for name, value in arguments.items() if value}, ids

    # -- company pages --------------------------------------------------------------------------

    def org_url(self, slug: str) -> str:
        return f"{self.base_url}org/{quote(slug, safe='')}"

    def name_request(self, name: str) -> scrapy.Request:
        return self.org_request(name)

    def org_request(self, slug: str, *, domain: str | None = None) -> scrapy.Request:
        return scrapy.Request(
            self.org_url(slug),
            callback=self.parse_org,
            meta={EXPECTED_KEY_META: slug, "slug": slug, "domain": domain, "handle_httpstatus_list": [404, 410]},
            dont_filter=not self.dedupe_across_workers,
        )

    def browser_request(self, slug: str, url: str) -> scrapy.Request:
        """The page again, rendered in Chromium: scripts run, the chart is expanded and scrolled."""
        timeout_ms = self.browser_timeout * 1000
        return scrapy.Request(
            url,
            callback=self.parse_rendered,
            meta={
                EXPECTED_KEY_META: slug,
                "slug": slug,
                "playwright": True,
                "playwright_page_goto_kwargs": {"wait_until": "domcontentloaded", "timeout": timeout_ms},
                "playwright_page_methods": [PageMethod("evaluate", SHOW_WHOLE_CHART, timeout_ms)],
                "handle_httpstatus_list": [404, 410],
            },
            dont_filter=True,
        )

    async def parse_org(self, response: Response) -> AsyncIterator[Any]:
        slug = response.meta["slug"]
        if response.status in (404, 410):
            async for item in self.gone(slug, response):
                yield item
            return
        self.crawler.stats.inc_value("theorg/pages_http")
        page = pages.selector(_text(response))
        try:
            data, shape = self.read_page(page, slug)
        except pages.ShapeError as exc:
            self.shape_changed(str(exc), response)
            return
        if data is None:
            self.dead_letter(f"no_org_data: {shape}", response=response, payload=response.body)
            return
        if data.get("positions") is None:
            # the page names the company but its chart is filled in by scripts
            if not self.browser_enabled:
                self.dead_letter("needs_browser: the chart is rendered by scripts", response=response)
                return
            self.crawler.stats.inc_value("theorg/browser_needed")
            yield self.browser_request(slug, response.url)
            return
        if record := self.build(lambda d: OrgCompany.from_page(d, shape), data, response=response):
            self.crawler.stats.inc_value(f"theorg/shape/{shape}")
            yield record

    async def parse_rendered(self, response: Response) -> AsyncIterator[Any]:
        slug = response.meta["slug"]
        if response.status in (404, 410):
            async for item in self.gone(slug, response):
                yield item
            return
        self.crawler.stats.inc_value("theorg/pages_browser")
        page = pages.selector(_text(response))
        try:
            data, _ = self.read_page(page, slug)
        except pages.ShapeError as exc:
            self.shape_changed(str(exc), response)
            return
        positions, teams = pages.rendered_chart(page)
        if data is None or not positions:
            self.shape_changed("the rendered page has no " + ("company" if data is None else "chart"), response)
            return
        data = {**data, "positions": positions, "teams": data.get("teams") or teams, "reportingLines": None}
        if record := self.build(lambda d: OrgCompany.from_page(d, "browser"), data, response=response):
            self.crawler.stats.inc_value("theorg/shape/browser")
            yield record

    def read_page(self, page: Any, slug: str) -> tuple[dict[str, Any] | None, str]:
        """(normalized data, shape) from the first shape the page has; (None, what was seen) when it has
        none. Positions None: the page names the company but carries no chart."""
        page_props = pages.next_data(page)
        if page_props is not None:
            data = pages.page_props_org(page_props)
            if data is None:
                keys = ", ".join(list(page_props)[:12])
                raise pages.ShapeError(f"__NEXT_DATA__ pageProps has no company (keys: {keys})")
            return self.with_json_ld(data, page, slug), "next_data"
        chunks = pages.flight_chunks(page)
        if chunks is not None:
            data = pages.flight_org(pages.flight_rows(pages.flight_payload(chunks)))
            if data is None:
                raise pages.ShapeError("the flight data holds no company")
            return self.with_json_ld(data, page, slug), "flight"
        organization = pages.json_ld_organization(page)
        if organization is not None:
            return pages.json_ld_org(organization, slug), "json_ld"
        return None, "no __NEXT_DATA__, flight data or JSON-LD Organization in the page"

    @staticmethod
    def with_json_ld(data: dict[str, Any], page: Any, slug: str) -> dict[str, Any]:
        """Company fields the page's props lack, from its JSON-LD Organization when it has one."""
        organization = pages.json_ld_organization(page)
        if organization is None or not isinstance(data.get("company"), dict):
            return data
        from_ld = pages.json_ld_org(organization, slug)["company"]
        company = {**{k: v for k, v in from_ld.items() if v is not None}, **data["company"]}
        return {**data, "company": company}

    def shape_changed(self, reason: str, response: Response) -> None:
        self.crawler.stats.inc_value("theorg/shape_changed")
        self.dead_letter(f"shape_changed: {reason}"[:300], response=response, payload=response.body)

    async def gone(self, slug: str, response: Response) -> AsyncIterator[Any]:
        if await self.stored_before(OrgCompany, slug):
            yield OrgCompany.tombstone(slug)
        else:
            self.not_found(slug, response)

    # -- companies by domain ----------------------------------------------------------------------

    def search_request(self, domain: str) -> scrapy.Request:
        return scrapy.Request(
            f"{self.base_url}search?{urlencode({'q': domain})}",
            callback=self.parse_search,
            meta={"domain": domain},
            dont_filter=True,
        )

    async def parse_search(self, response: Response) -> AsyncIterator[Any]:
        """The site's search page for a domain: follow the company whose website is on that domain."""
        domain = response.meta["domain"]
        try:
            page_props = pages.next_data(pages.selector(_text(response)))
        except pages.ShapeError as exc:
            self.shape_changed(str(exc), response)
            return
        results = page_props.get("results") if page_props is not None else None
        if not isinstance(results, list):
            self.shape_changed("the search page has no results list", response)
            return
        for result in results:
            if not isinstance(result, dict) or not isinstance(result.get("slug"), str):
                continue
            hosts = {_host(result.get("domain")), _host(result.get("website"))}
            if domain in hosts:
                slug = result["slug"].strip().lower()
                fresh = await self.not_fresh([slug])
                if fresh:
                    yield self.org_request(slug, domain=domain)
                return
        self.crawler.stats.inc_value("theorg/domain_not_found")
        self.dead_letter(f"domain_not_found: no company on {domain}"[:300], response=response)


def _text(response: Response) -> str:
    return response.body.decode(getattr(response, "encoding", None) or "utf-8", "replace")


def _host(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip().lower()
    host = urlsplit(value if "//" in value else f"//{value}").hostname
    return host.removeprefix("www.") if host else None
