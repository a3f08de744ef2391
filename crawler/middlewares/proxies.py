"""Per-source proxy rotation with benching of failing proxies.

A source's policy names the setting that holds its proxy list (``SourcePolicy.proxies_setting``,
e.g. ``<SOURCE>_PROXIES``: comma-separated URLs or a list). Requests go round-robin over the proxies that
are not benched; a proxy whose request fails with a connection error or a 403/407/429 is benched for
``PROXY_BENCH_SECONDS`` (default 300), doubling on each repeat failure up to ``PROXY_BENCH_MAX``
(default 3600). With no list for the crawl's source the middleware is not configured.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response

logger = logging.getLogger(__name__)
BENCH_STATUSES = frozenset({403, 407, 429})


@dataclass
class _Proxy:
    url: str
    failures: int = 0
    benched_until: float = 0.0


class ProxyRotationMiddleware:
    def __init__(self, crawler: Crawler, proxies: list[str], bench_seconds: float, bench_max: float) -> None:
        self.crawler = crawler
        self.proxies = [_Proxy(url) for url in proxies]
        self.bench_seconds = bench_seconds
        self.bench_max = bench_max
        self._cycle = itertools.cycle(self.proxies)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProxyRotationMiddleware:
        setting = crawler.settings.get("PROXIES_SETTING")
        proxies = crawler.settings.getlist(setting) if setting else []
        proxies = [p.strip() for p in proxies if p and p.strip()]
        if not proxies:
            raise NotConfigured  # no proxy list for this source: stay out of the way, quietly
        return cls(
            crawler,
            proxies,
            crawler.settings.getfloat("PROXY_BENCH_SECONDS", 300.0),
            crawler.settings.getfloat("PROXY_BENCH_MAX", 3600.0),
        )

    def choose(self, now: float | None = None) -> _Proxy:
        """The next proxy in rotation that is not benched; the soonest back if all are."""
        now = time.monotonic() if now is None else now
        for _ in range(len(self.proxies)):
            proxy = next(self._cycle)
            if proxy.benched_until <= now:
                return proxy
        return min(self.proxies, key=lambda p: p.benched_until)

    def process_request(self, request: Request) -> None:
        if "proxy" in request.meta and "_rotated_proxy" not in request.meta:
            return  # a request that names its own proxy keeps it
        proxy = self.choose()
        request.meta["proxy"] = proxy.url
        request.meta["_rotated_proxy"] = proxy.url
        self.crawler.stats.inc_value("proxies/requests")

    def process_response(self, request: Request, response: Response) -> Response:
        url = request.meta.get("_rotated_proxy")
        if url is not None:
            if response.status in BENCH_STATUSES:
                self.bench(url)
            else:
                self._by_url(url).failures = 0
        return response

    def process_exception(self, request: Request, exception: Exception) -> None:
        url = request.meta.get("_rotated_proxy")
        if url is not None:
            self.bench(url)

    def bench(self, url: str, now: float | None = None) -> None:
        proxy = self._by_url(url)
        proxy.failures += 1
        seconds = min(self.bench_seconds * 2 ** (proxy.failures - 1), self.bench_max)
        proxy.benched_until = (time.monotonic() if now is None else now) + seconds
        self.crawler.stats.inc_value("proxies/benched")
        logger.info("proxy benched for %.0f s after %d failure(s)", seconds, proxy.failures)

    def _by_url(self, url: str) -> _Proxy:
        return next(p for p in self.proxies if p.url == url)
