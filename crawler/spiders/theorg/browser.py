"""The browser side of the source: Chromium through scrapy-playwright, in bounded, recycled contexts.

* Images, fonts and media are never loaded (:func:`abort_heavy_request`, ``PLAYWRIGHT_ABORT_REQUEST``).
* At most ``THEORG_BROWSER_CONTEXTS`` contexts render at once; each is closed and replaced after
  ``THEORG_PAGES_PER_CONTEXT`` pages (:class:`BrowserContextMiddleware`), so the browser's memory
  stays flat however long the crawl.
* Every page is closed once its response (or failure) is seen, by the same middleware.
* Proxies: a context gets one proxy of ``THEORG_PROXIES`` from the crawl's proxy rotation
  (:class:`crawler.middlewares.proxies.ProxyRotationMiddleware`); when a page fails through it, the proxy
  is benched there and the context retired, so the next pages get a new context with another proxy.
* The crawl's memory, browser processes included, is watched (:class:`ProcessTreeMemoryUsage`, Scrapy's
  memory-usage extension over the whole process tree; ``THEORG_MEMORY_LIMIT_MB``). scrapy-playwright's
  own extension finds no browser process with the Playwright and Scrapy pinned here (it reads private
  attributes), so it would count none.
"""

from __future__ import annotations

import itertools
import logging
import shutil
from dataclasses import dataclass, field
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.extensions.memusage import MemoryUsage
from scrapy.http import Response

from crawler.middlewares.proxies import BENCH_STATUSES, ProxyRotationMiddleware

logger = logging.getLogger(__name__)

BLOCKED_RESOURCES = frozenset({"image", "font", "media"})
#: Debian's Chromium, headless; without the background-networking flags it keeps calling hosts
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
CONTEXT_PREFIX = "chart"


def abort_heavy_request(request: Any) -> bool:
    """``PLAYWRIGHT_ABORT_REQUEST``: a chart needs neither images, fonts nor media."""
    return request.resource_type in BLOCKED_RESOURCES


def chromium_path(configured: str | None) -> str | None:
    """The Chromium executable: the setting, else ``chromium`` / ``chromium-browser`` on the PATH."""
    if configured:
        return configured
    return shutil.which("chromium") or shutil.which("chromium-browser")


def playwright_settings(executable: str, contexts: int, timeout: float, memory_limit_mb: int) -> dict[str, Any]:
    """The Scrapy settings that run scrapy-playwright with this Chromium."""
    return {
        "PLAYWRIGHT_BROWSER_TYPE": "chromium",
        "PLAYWRIGHT_LAUNCH_OPTIONS": {
            "executable_path": executable,
            "headless": True,
            "args": list(CHROMIUM_ARGS),
            "timeout": timeout * 1000,
        },
        # the recycled contexts of each slot may overlap while the old one finishes its pages
        "PLAYWRIGHT_MAX_CONTEXTS": 2 * contexts,
        "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": timeout * 1000,
        "PLAYWRIGHT_ABORT_REQUEST": f"{__name__}.abort_heavy_request",
        "MEMUSAGE_ENABLED": True,
        "MEMUSAGE_LIMIT_MB": memory_limit_mb,
        "MEMUSAGE_CHECK_INTERVAL_SECONDS": 10.0,
    }


def process_tree_memory(pid: int | None = None) -> int:
    """Bytes of memory of a process and all its descendants (the Playwright driver, every Chromium
    process): their proportional set sizes, so that pages the browser's processes share count once."""
    import psutil

    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for member in members:
        try:
            info = member.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except psutil.Error:  # a process that just ended, or one we may not read
            continue
    return total


class ProcessTreeMemoryUsage(MemoryUsage):
    """Scrapy's memory-usage extension (``memusage/max``, ``MEMUSAGE_LIMIT_MB`` closes the crawl) over the
    crawl process and its browser processes."""

    def get_virtual_size(self) -> int:
        return process_tree_memory()


@dataclass
class _Context:
    name: str
    proxy: str | None
    assigned: int = 0
    finished: int = 0
    retired: bool = False
    handle: Any = None  # the Playwright BrowserContext, once a page of it was seen
    in_flight: set[int] = field(default_factory=set)


class BrowserContextMiddleware:
    """Puts every browser request in a context of its own choosing (round-robin over the slots), with
    that context's proxy; closes each page when its answer is in, and each retired context once its
    last page is closed. Off (``NotConfigured``) when the crawl does not use the browser."""

    def __init__(self, crawler: Crawler, slots: int, pages_per_context: int, timeout: float) -> None:
        self.crawler = crawler
        self.pages_per_context = pages_per_context
        self.timeout = timeout
        self.current: list[_Context | None] = [None] * slots
        self._slot = itertools.cycle(range(slots))
        self._generation = itertools.count()
        self.contexts: dict[str, _Context] = {}
        self._proxies: ProxyRotationMiddleware | bool | None = False  # False: not looked up yet

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BrowserContextMiddleware:
        if not crawler.settings.getbool("THEORG_BROWSER_ENABLED"):
            raise NotConfigured
        return cls(
            crawler,
            crawler.settings.getint("THEORG_BROWSER_CONTEXTS", 2),
            crawler.settings.getint("THEORG_PAGES_PER_CONTEXT", 50),
            crawler.settings.getfloat("THEORG_BROWSER_TIMEOUT", 30.0),
        )

    @property
    def proxies(self) -> ProxyRotationMiddleware | None:
        """The crawl's proxy rotation (None without a proxy list), shared with the plain requests."""
        if self._proxies is False:
            middlewares = self.crawler.engine.downloader.middleware.middlewares if self.crawler.engine else ()
            self._proxies = next((m for m in middlewares if isinstance(m, ProxyRotationMiddleware)), None)
        return self._proxies  # type: ignore[return-value]

    def _context_for_next_page(self) -> _Context:
        slot = next(self._slot)
        context = self.current[slot]
        if context is None or context.retired or context.assigned >= self.pages_per_context:
            if context is not None:
                context.retired = True
            proxy = self.proxies.choose().url if self.proxies is not None else None
            context = _Context(f"{CONTEXT_PREFIX}-{slot}-{next(self._generation)}", proxy)
            self.contexts[context.name] = context
            self.current[slot] = context
            self.crawler.stats.inc_value("theorg/browser_contexts")
        return context

    def process_request(self, request: Request) -> None:
        if not request.meta.get("playwright"):
            return
        request.meta.pop("playwright_page", None)  # a retry renders in a new page
        context = self._context_for_next_page()
        context.assigned += 1
        context.in_flight.add(id(request))
        request.meta["playwright_context"] = context.name
        request.meta["playwright_include_page"] = True  # this middleware closes it
        kwargs: dict[str, Any] = {"java_script_enabled": True}
        if context.proxy is not None:
            # loopback is bypassed by default in Chromium: "<-loopback>" sends it through the proxy too
            kwargs["proxy"] = {"server": context.proxy, "bypass": "<-loopback>"}
            request.meta["proxy"] = context.proxy  # the rotation keeps a request's own proxy
        request.meta["playwright_context_kwargs"] = kwargs

    async def process_response(self, request: Request, response: Response) -> Response:
        context = self.contexts.get(request.meta.get("playwright_context", ""))
        if context is None or not request.meta.get("playwright"):
            return response
        if response.status in BENCH_STATUSES:
            self._bench(context)
        await self._finish(request, context)
        return response

    async def process_exception(self, request: Request, exception: Exception) -> None:
        context = self.contexts.get(request.meta.get("playwright_context", ""))
        if context is None or not request.meta.get("playwright"):
            return
        self.crawler.stats.inc_value("theorg/browser_failures")
        if context.proxy is not None:
            self._bench(context)
        await self._finish(request, context)

    def _bench(self, context: _Context) -> None:
        if context.proxy is not None and self.proxies is not None:
            self.proxies.bench(context.proxy)
            self.crawler.stats.inc_value("theorg/browser_proxies_benched")
        context.retired = True

    async def _finish(self, request: Request, context: _Context) -> None:
        """Close the request's page; close its context when it is retired and this was its last page."""
        if id(request) in context.in_flight:
            context.in_flight.discard(id(request))
            context.finished += 1
        page = request.meta.pop("playwright_page", None)
        if page is not None:
            context.handle = page.context
            try:
                await page.close()
            except Exception as exc:  # the browser may be gone already: nothing left to close
                logger.debug("closing a page failed: %s", exc)
            self.crawler.stats.inc_value("theorg/browser_pages_closed")
        done = context.retired or context.assigned >= self.pages_per_context
        if done and not context.in_flight:
            self.contexts.pop(context.name, None)
            for slot, current in enumerate(self.current):
                if current is context:
                    self.current[slot] = None
            if context.handle is not None:
                try:
                    await context.handle.close()
                except Exception as exc:
                    logger.debug("closing a browser context failed: %s", exc)
                self.crawler.stats.inc_value("theorg/browser_contexts_closed")
