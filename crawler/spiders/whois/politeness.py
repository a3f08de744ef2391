"""Politeness per server: a token bucket for every RDAP host and WHOIS server, and throttle answers.

Each server (a request's download slot: the real host name, even when a map sends the request to a
relay or a loopback fake) has its own :class:`TokenBucket` (``WHOIS_RATE`` per second, ``WHOIS_BURST``
at once; ``WHOIS_SERVER_RATES`` per server). The download handlers take a token before they connect,
so a request waits inside its server's slot: a slow or resting server holds only its own slot's
requests, and Scrapy's downloader-aware queue keeps handing out the other servers' requests.

:class:`ThrottleAnswers` reads what comes back: an RDAP ``429`` rests its server for the
``Retry-After``; a port-43 throttle text ("LIMIT EXCEEDED", "try again after: 24h", "BLACKLISTED"…)
rests it for the time asked, else ``WHOIS_THROTTLE_BACKOFF`` doubling per answer in a row, and becomes
a 429 with that ``Retry-After`` for the retry middleware. A throttle answer is never parsed as a
record; once its retries are spent (or the rest asked is over ``WHOIS_THROTTLE_MAX_WAIT``) it is a dead
letter.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import DownloadCancelledError
from scrapy.http import Response
from scrapy.utils.httpobj import urlparse_cached

from crawler.spiders.whois.text import UnreadableAnswer, decode, throttle_wait

logger = logging.getLogger(__name__)
SLOT_META = "download_slot"
RECHECK_SECONDS = 5.0


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a request takes one. ``pause`` empties it for a while."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()
        self.paused_until = 0.0
        self.granted = 0

    def reserve(self) -> float:
        """Take a token now (0.0), or the seconds until one may be there (nothing taken)."""
        now = self.clock()
        if now < self.paused_until:
            return self.paused_until - now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.granted += 1
            return 0.0
        return (1.0 - self.tokens) / self.rate

    async def acquire(self, max_wait: float = float("inf"), name: str = "") -> float:
        """Wait for a token; the seconds waited. :class:`ServerResting` as soon as the wait would be
        longer than ``max_wait`` (a rest may begin, or grow, while a request waits: looked at every
        few seconds)."""
        waited = 0.0
        while (delay := self.reserve()) > 0:
            if delay > max_wait:
                raise ServerResting(f"{name} rests for {delay:.0f} s more (over WHOIS_THROTTLE_MAX_WAIT)")
            step = min(delay, RECHECK_SECONDS)
            await asyncio.sleep(step)
            waited += step
        return waited

    def pause(self, seconds: float) -> None:
        """No token for ``seconds``, and the bucket starts empty afterwards."""
        until = self.clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.tokens = 0.0
            self.updated = until


class ServerResting(DownloadCancelledError):
    """The server asked for a rest longer than the crawl waits (not retried: a dead letter)."""


class ServerBuckets:
    """The buckets of one crawl, by server; shared by its download handlers and middleware."""

    _of: weakref.WeakKeyDictionary[Crawler, ServerBuckets] = weakref.WeakKeyDictionary()

    def __init__(self, rate: float, burst: int, rates: dict[str, float], max_wait: float = float("inf")) -> None:
        self.rate = rate
        self.burst = burst
        self.rates = rates
        #: a request for a server resting longer than this is not held: it fails at once (a dead letter)
        self.max_wait = max_wait
        self.buckets: dict[str, TokenBucket] = {}
        #: throttle answers in a row, per server (the back-off doubles with each)
        self.strikes: dict[str, int] = {}

    @classmethod
    def of(cls, crawler: Crawler) -> ServerBuckets:
        if crawler not in cls._of:
            settings = crawler.settings
            cls._of[crawler] = cls(
                settings.getfloat("WHOIS_RATE", 1.0),
                settings.getint("WHOIS_BURST", 2),
                parse_json_map(settings.get("WHOIS_SERVER_RATES"), "WHOIS_SERVER_RATES", float),
                settings.getfloat("WHOIS_THROTTLE_MAX_WAIT", 3600.0),
            )
        return cls._of[crawler]

    def bucket(self, server: str) -> TokenBucket:
        if server not in self.buckets:
            self.buckets[server] = TokenBucket(self.rates.get(server, self.rate), self.burst)
        return self.buckets[server]

    async def acquire(self, request: Request, crawler: Crawler) -> None:
        """Wait for a token of the request's server; :class:`ServerResting` when it rests for longer
        than ``WHOIS_THROTTLE_MAX_WAIT`` (its requests become dead letters instead of holding the crawl)."""
        server = server_of(request)
        waited = await self.bucket(server).acquire(self.max_wait, server)
        if waited > 0 and crawler.stats is not None:
            crawler.stats.inc_value("whois/politeness_wait_seconds", round(waited, 3))


def server_of(request: Request) -> str:
    """The server a request is for: its download slot (set by the spider to the real host name, and by
    the downloader), else its host name."""
    return request.meta.get(SLOT_META) or urlparse_cached(request).hostname or ""


def parse_json_map(raw: Any, name: str, convert: Callable[[Any], Any] = str) -> dict[str, Any]:
    """A JSON object setting (``{}`` when unset); ValueError naming the setting when malformed."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, dict):
        value = raw
    else:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise ValueError(f"{name}: expected a JSON object, got {str(raw)[:80]!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected a JSON object")
    try:
        return {str(k).lower() if name != "RDAP_URL_MAP" else str(k): convert(v) for k, v in value.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{name}: a value is not of the expected type") from None


class ThrottleAnswers:
    """Downloader middleware: rest a server that says to slow down; see the module docstring."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.buckets = ServerBuckets.of(crawler)
        self.backoff = crawler.settings.getfloat("WHOIS_THROTTLE_BACKOFF", 60.0)
        self.max_wait = crawler.settings.getfloat("WHOIS_THROTTLE_MAX_WAIT", 3600.0)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ThrottleAnswers:
        return cls(crawler)

    def process_response(self, request: Request, response: Response) -> Response:
        server = server_of(request)
        stats = self.crawler.stats
        assert stats is not None
        if response.status == 429:
            wait = retry_after(response)
            wait = self.next_backoff(server) if wait is None else wait
            self.rest(server, wait, "429")
            return response
        if urlparse_cached(request).scheme != "whois":
            self.buckets.strikes.pop(server, None)
            return response
        try:
            asked = throttle_wait(decode(response.body))
        except UnreadableAnswer:
            asked = None
        if asked is None:
            self.buckets.strikes.pop(server, None)
            return response
        wait = asked if asked > 0 else self.next_backoff(server)
        self.rest(server, wait, "throttle text")
        stats.inc_value("whois/throttle_answers")
        if wait > self.max_wait:
            # not worth holding the crawl for: a dead letter now, fetched again by a later run
            request.meta["dont_retry"] = True
        headers = {**response.headers.to_unicode_dict(), "Retry-After": str(int(wait))}
        return response.replace(status=429, headers=headers)

    def next_backoff(self, server: str) -> float:
        strikes = self.buckets.strikes.get(server, 0)
        self.buckets.strikes[server] = strikes + 1
        return self.backoff * 2**strikes

    def rest(self, server: str, seconds: float, why: str) -> None:
        self.buckets.bucket(server).pause(seconds)
        assert self.crawler.stats is not None
        self.crawler.stats.inc_value(f"whois/server_rests/{server}")
        logger.warning("whois: %s answered %s: it rests %.0f s (its requests wait, others go on)", server, why, seconds)


def retry_after(response: Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = response.headers.get(b"Retry-After")
    if not value:
        return None
    text = value.decode("latin-1").strip()
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
