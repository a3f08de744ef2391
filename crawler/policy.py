"""Per-source crawl policy, declared in each source's ``source.py`` (``Source.policy``).

The base spider turns a :class:`SourcePolicy` into Scrapy settings, so a source's rate, concurrency,
retries, proxies, size cap and freshness TTL live in one declaration (each overridable with ``-s``);
``tests/test_sources.py`` checks that every source declares one and that it stays within sane bounds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourcePolicy:
    #: concurrent requests to the source (per host)
    concurrency: int
    #: seconds between requests to one host (0: none); AutoThrottle adapts above it when enabled
    delay: float = 0.0
    autothrottle: bool = False
    #: retries of a failed request before it becomes a dead letter
    retries: int = 3
    #: exponential back-off: base * 2**attempt seconds, capped; a Retry-After header wins
    backoff_base: float = 1.0
    backoff_max: float = 120.0
    #: the longest ``Retry-After`` obeyed (seconds); a longer one is capped (the wait happens in the
    #: scheduler, not in a download slot: crawler/scheduler.py)
    retry_after_max: float = 300.0
    #: seconds from a request's first attempt after which it is not retried again: a body trickling in,
    #: or a server that keeps failing, costs at most this (plus one download timeout)
    request_deadline: float = 600.0
    #: HTTP statuses that are retried
    retry_http_codes: tuple[int, ...] = (429, 500, 502, 503, 504, 522, 524, 408)
    #: the setting that holds this source's proxy list (comma-separated or a list), ``<SOURCE>_PROXIES``
    proxies_setting: str | None = None
    #: responses larger than this are abandoned and recorded as dead letters
    max_response_bytes: int = 100 * 1024 * 1024
    download_timeout: float = 60.0
    #: seconds: a named key stored this recently is not fetched again (the design's KV caches); 0: always fetch
    freshness_ttl: float = 0.0
    #: obey the site's robots.txt (a source of web pages, not an API); the source also enables Scrapy's
    #: RobotsTxtMiddleware among its own ``downloader_middlewares`` (the project disables it for APIs)
    robots_txt: bool = False

    def scrapy_settings(self) -> dict[str, Any]:
        """The Scrapy settings this policy stands for (spider priority)."""
        return {
            "CONCURRENT_REQUESTS": max(self.concurrency, 1),
            "CONCURRENT_REQUESTS_PER_DOMAIN": self.concurrency,
            "DOWNLOAD_DELAY": self.delay,
            "DOWNLOAD_DELAY_JITTER": 0.5 if self.delay > 0 else 0,
            "AUTOTHROTTLE_ENABLED": self.autothrottle,
            "AUTOTHROTTLE_TARGET_CONCURRENCY": max(self.concurrency / 2, 1.0),
            "RETRY_TIMES": self.retries,
            "RETRY_HTTP_CODES": list(self.retry_http_codes),
            "RETRY_BACKOFF_BASE": self.backoff_base,
            "RETRY_BACKOFF_MAX": self.backoff_max,
            "RETRY_AFTER_MAX": self.retry_after_max,
            "REQUEST_DEADLINE_SECONDS": self.request_deadline,
            "DOWNLOAD_MAXSIZE": self.max_response_bytes,
            "DOWNLOAD_WARNSIZE": min(self.max_response_bytes, 32 * 1024 * 1024),
            "DOWNLOAD_TIMEOUT": self.download_timeout,
            "PROXIES_SETTING": self.proxies_setting,
            "FRESHNESS_TTL_SECONDS": self.freshness_ttl,
            "ROBOTSTXT_OBEY": self.robots_txt,
        }
