"""Retries with exponential back-off that honour ``Retry-After`` (stock Scrapy retries at once).

Replaces ``scrapy.downloadermiddlewares.retry.RetryMiddleware``. Settings (from a source's policy):
``RETRY_TIMES``, ``RETRY_BACKOFF_BASE`` (seconds, default 1), ``RETRY_BACKOFF_MAX`` (default 120),
``RETRY_AFTER_MAX`` (the longest ``Retry-After`` obeyed, default 300 s; longer ones are capped) and
``REQUEST_DEADLINE_SECONDS`` (default 600: no retry once a request's first attempt is this old). A
request that fails after its last retry reaches the spider's errback, which records it as a dead letter.

The wait does not happen here: the retry is returned at once with ``meta[NOT_BEFORE_META]`` and waits in
the scheduler (:mod:`crawler.scheduler`), so the download slot serves other requests meanwhile and a
stop is prompt.

The retry request is built by Scrapy's public ``get_retry_request`` (the stock middleware's ``retry_times``,
``max_retry_times``, ``priority_adjust`` and ``give_up_log_level`` meta keys and ``retry/*`` stats), not
by the stock middleware's private ``_retry``.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware, get_retry_request
from scrapy.http import Response
from scrapy.settings import BaseSettings
from scrapy.utils.response import response_status_message

from crawler.scheduler import NOT_BEFORE_META

logger = logging.getLogger(__name__)
#: request meta: when (``time.time()``) the request was first attempted (kept by its retries)
FIRST_ATTEMPT_META = "first_attempt_at"


class BackoffRetryMiddleware(RetryMiddleware):
    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff_base = settings.getfloat("RETRY_BACKOFF_BASE", 1.0)
        self.backoff_max = settings.getfloat("RETRY_BACKOFF_MAX", 120.0)
        self.retry_after_max = settings.getfloat("RETRY_AFTER_MAX", 300.0)
        self.deadline = settings.getfloat("REQUEST_DEADLINE_SECONDS", 600.0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> BackoffRetryMiddleware:
        middleware = cls(crawler.settings)
        middleware.crawler = crawler
        return middleware

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get("dont_retry", False) or response.status not in self.retry_http_codes:
            return response
        delay = self.retry_after(response)
        if delay is not None:
            self.crawler.stats.inc_value("retry/retry_after_honoured")
        else:
            delay = self.backoff(request)
        if self._past_deadline(request, delay):
            return response
        retry = self.retry_request(request, response_status_message(response.status))
        if retry is None:
            return response
        return self._later(retry, delay)

    async def process_exception(self, request: Request, exception: Exception) -> Request | Response | None:
        if request.meta.get("dont_retry", False) or not isinstance(exception, self.exceptions_to_retry):
            return None
        delay = self.backoff(request)
        if self._past_deadline(request, delay):
            return None
        retry = self.retry_request(request, exception)
        return None if retry is None else self._later(retry, delay)

    def retry_request(self, request: Request, reason: str | Exception) -> Request | None:
        """A copy of ``request`` to send again, or None when its retries are spent (logged, counted)."""
        assert self.crawler.spider is not None
        return get_retry_request(
            request,
            spider=self.crawler.spider,
            reason=reason,
            max_retry_times=request.meta.get("max_retry_times", self.max_retry_times),
            priority_adjust=request.meta.get("priority_adjust", self.priority_adjust),
            give_up_log_level=request.meta.get("give_up_log_level", self.give_up_log_level),
        )

    def backoff(self, request: Request) -> float:
        """``base * 2**attempt`` with ±25 % jitter, capped by ``RETRY_BACKOFF_MAX``."""
        attempt = request.meta.get("retry_times", 0)
        delay = min(self.backoff_base * 2**attempt, self.backoff_max)
        return delay * random.uniform(0.75, 1.25)

    def retry_after(self, response: Response) -> float | None:
        """Seconds to wait per the ``Retry-After`` header (delta-seconds or an HTTP date), capped."""
        value = response.headers.get(b"Retry-After")
        if not value:
            return None
        text = value.decode("latin-1").strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        return min(max(seconds, 0.0), self.retry_after_max)

    def _past_deadline(self, request: Request, delay: float) -> bool:
        """Whether a retry after ``delay`` would start past the request's deadline (then it is not retried)."""
        first = request.meta.setdefault(FIRST_ATTEMPT_META, time.time())
        if time.time() + delay - first <= self.deadline:
            return False
        self.crawler.stats.inc_value("retry/deadline_reached")
        logger.warning(
            "not retrying %s: %.0f s since its first attempt (REQUEST_DEADLINE_SECONDS %g)",
            request.url,
            time.time() - first,
            self.deadline,
        )
        return True

    def _later(self, retry: Request, seconds: float) -> Request:
        """The retry, due ``seconds`` from now (it waits in the scheduler)."""
        self.crawler.stats.inc_value("retry/backoff_seconds", round(seconds, 3))
        if seconds > 0:
            retry.meta[NOT_BEFORE_META] = time.monotonic() + seconds
        return retry
