"""GitHub's rate limits, done right: rotate tokens, never spend a request a token cannot afford.

Tokens come from ``GITHUB_TOKENS`` (comma-separated) and ``GITHUB_TOKEN``. For every token and resource
(``core``, ``search``) the pool tracks ``x-ratelimit-remaining`` / ``-reset`` from the responses and the
requests in flight; a request is sent only with a token that has budget left, else it waits for the
earliest reset. A 403/429 rate-limit answer obeys ``retry-after``, else marks the token exhausted until
its reset, else backs off exponentially, and the request is sent again. Tokens are never logged: logs
and stats name them by position (``#1``). Declared by the GitHub source (``source.py``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Response

from crawler.middlewares import CREDENTIAL_HEADERS_META
from crawler.scheduler import NOT_BEFORE_META

logger = logging.getLogger(__name__)
RATE_LIMIT_STATUSES = frozenset({403, 429})
#: request meta: seconds a request already waited for a token budget to reset
WAITED_META = "github_waited"


UNKNOWN_BUDGET = 10**9  # a token whose window is new: the next response tells its real budget


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower() + f":{parts.port or ''}"


def resource_of(url: str) -> str:
    # an Enterprise base URL has a path prefix (…/api/v3/), so look for the segment anywhere
    return "search" if "/search/" in urlsplit(url).path else "core"


@dataclass
class Budget:
    remaining: int | None = None  # unknown until the first response
    reset: float = 0.0
    in_flight: int = 0

    def available(self, now: float) -> int:
        if self.remaining is None or now >= self.reset:
            return UNKNOWN_BUDGET - self.in_flight
        return self.remaining - self.in_flight


class TokenPool:
    """Which token may send the next request of a resource, and until when none can."""

    def __init__(self, tokens: list[str], clock: Callable[[], float] = time.time) -> None:
        self.tokens = list(dict.fromkeys(t for t in tokens if t))
        self.clock = clock
        self.budgets: dict[tuple[int, str], Budget] = {}
        self.revoked: set[int] = set()
        self.paused_until: dict[int, float] = {}  # secondary limits: the token rests until then

    def budget(self, index: int, resource: str) -> Budget:
        return self.budgets.setdefault((index, resource), Budget())

    def acquire(self, resource: str) -> tuple[int | None, float]:
        """(token index, 0) for a token with budget left, reserved; or (None, seconds to wait)."""
        now = self.clock()
        live = [i for i in range(len(self.tokens)) if i not in self.revoked]
        if not live:
            raise IgnoreRequest("no usable GitHub token")
        awake = [i for i in live if self.paused_until.get(i, 0.0) <= now]
        best = max(awake, key=lambda i: self.budget(i, resource).available(now), default=None)
        if best is not None and (budget := self.budget(best, resource)).available(now) > 0:
            if budget.remaining is not None and now >= budget.reset:
                budget.remaining = None  # the window passed: the next response tells the new budget
            budget.in_flight += 1
            return best, 0.0
        ready_at = min(
            max(
                self.budget(i, resource).reset if self.budget(i, resource).available(now) <= 0 else now,
                self.paused_until.get(i, 0.0),
            )
            for i in live
        )
        return None, max(ready_at - now, 0.0) + 0.05

    def pause(self, index: int, seconds: float) -> None:
        self.paused_until[index] = max(self.paused_until.get(index, 0.0), self.clock() + seconds)

    def release(self, index: int, resource: str) -> None:
        budget = self.budget(index, resource)
        budget.in_flight = max(budget.in_flight - 1, 0)

    def observe(self, index: int, resource: str, remaining: int | None, reset: float | None) -> None:
        budget = self.budget(index, resource)
        if reset is not None and reset >= budget.reset:
            if reset > budget.reset or remaining is None or budget.remaining is None:
                budget.remaining = remaining
            else:  # answers of one window arrive out of order: the lowest count is the truest
                budget.remaining = min(budget.remaining, remaining) if remaining is not None else budget.remaining
            budget.reset = reset

    def exhaust(self, index: int, resource: str, reset: float) -> None:
        budget = self.budget(index, resource)
        budget.remaining, budget.reset = 0, max(reset, self.clock() + 1)


class GithubRateLimitMiddleware:
    def __init__(self, crawler: Crawler, pool: TokenPool, max_wait: float, max_retries: int, api_url: str = "") -> None:
        self.crawler = crawler
        self.pool = pool
        self.max_wait = max_wait
        self.max_retries = max_retries
        #: the API's origin: the only one tokens are sent to (a redirect elsewhere goes without them)
        self.api_origin = _origin(api_url) if api_url else None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> GithubRateLimitMiddleware:
        settings = crawler.settings
        if settings.get("REDIS_URL"):
            logger.warning(
                "github: a distributed crawl tracks token budgets per worker: give each worker its own tokens"
            )
        tokens = [t.strip() for t in settings.getlist("GITHUB_TOKENS")] + [settings.get("GITHUB_TOKEN") or ""]
        pool = TokenPool([t for t in tokens if t])
        if not pool.tokens:
            if settings.getbool("GITHUB_REQUIRE_TOKEN", False):
                raise NotConfigured("GitHub needs a token: set GITHUB_TOKENS or GITHUB_TOKEN")
            pool = TokenPool([""])  # anonymous: one budget (60 an hour) still tracked
            pool.tokens = [""]
        return cls(
            crawler,
            pool,
            settings.getfloat("GITHUB_MAX_WAIT", 3700.0),
            settings.getint("GITHUB_RATE_LIMIT_RETRIES", 6),
            settings.get("GITHUB_API_URL") or "",
        )

    async def process_request(self, request: Request) -> Request | None:
        if self.api_origin and _origin(request.url) != self.api_origin:
            # not the API (a redirect to another host, a download link): no token, no budget
            request.headers.pop(b"Authorization", None)
            request.meta.pop("github_token", None)
            self.crawler.stats.inc_value("github/requests/elsewhere_without_token")
            return None
        resource = resource_of(request.url)
        index, wait = self.pool.acquire(resource)
        if index is None:
            waited = request.meta.get(WAITED_META, 0.0)
            if waited + wait > self.max_wait:
                raise IgnoreRequest(f"every GitHub token is exhausted for {resource} longer than GITHUB_MAX_WAIT")
            self.crawler.stats.inc_value(f"github/waited_for_reset/{resource}")
            logger.info("github: every token is out of %s budget; waiting %.0f s for the reset", resource, wait)
            # back to the scheduler until the reset: no download slot is held, and a stop is prompt
            later = request.replace(dont_filter=True)
            later.meta[WAITED_META] = waited + wait
            later.meta[NOT_BEFORE_META] = time.monotonic() + wait
            return later
        request.meta["github_token"] = index
        request.meta["github_resource"] = resource
        token = self.pool.tokens[index]
        request.headers.pop(b"Authorization", None)  # a retry's copy may carry another token's header
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
            # a retry of this request must not carry the token into a persisted queue (crawler.distributed)
            request.meta[CREDENTIAL_HEADERS_META] = ["Authorization"]
        self.crawler.stats.inc_value(f"github/requests/token_{index + 1}/{resource}")
        return None

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        index, resource = request.meta.get("github_token"), request.meta.get("github_resource", "core")
        if index is None:
            return response
        self.pool.release(index, resource)
        remaining = _int_header(response, b"x-ratelimit-remaining")
        reset = _int_header(response, b"x-ratelimit-reset")
        resource = (response.headers.get(b"x-ratelimit-resource") or resource.encode()).decode()
        self.pool.observe(index, resource, remaining, reset)
        if response.status == 304:
            self.crawler.stats.inc_value("github/not_modified")
        if response.status == 401:
            self.pool.revoked.add(index)
            logger.error("github: token #%d was rejected (401); it is no longer used", index + 1)
            return self._again(request, "bad_credentials") or response
        if response.status not in RATE_LIMIT_STATUSES or not _is_rate_limit(response, remaining):
            return response
        retry_after = _int_header(response, b"retry-after")
        back_off = 0.0
        if retry_after is not None:
            # a secondary limit: the whole token rests, not just this request
            self.crawler.stats.inc_value("github/secondary_limit")
            self.pool.pause(index, min(retry_after, self.max_wait))
        elif remaining == 0 and reset is not None:
            self.crawler.stats.inc_value("github/exhausted")
            self.pool.exhaust(index, resource, reset)
        else:
            back_off = min(2 ** request.meta.get("github_retries", 0), 60) * random.uniform(0.75, 1.25)
        again = self._again(request, "rate_limited")
        if again is None:
            return response
        if back_off:  # waits in the scheduler, not in the download slot
            again.meta[NOT_BEFORE_META] = time.monotonic() + back_off
        return again

    def process_exception(self, request: Request, exception: Exception) -> None:
        index = request.meta.get("github_token")
        if index is not None:
            self.pool.release(index, request.meta.get("github_resource", "core"))

    def _again(self, request: Request, why: str) -> Request | None:
        retries = request.meta.get("github_retries", 0)
        if retries >= self.max_retries:
            return None
        self.crawler.stats.inc_value(f"github/retried/{why}")
        retry = request.replace(dont_filter=True)
        retry.meta["github_retries"] = retries + 1
        retry.headers.pop(b"Authorization", None)
        return retry


def _int_header(response: Response, name: bytes) -> int | None:
    value = response.headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _is_rate_limit(response: Response, remaining: int | None) -> bool:
    if remaining == 0 or response.headers.get(b"retry-after") is not None or response.status == 429:
        return True
    return b"rate limit" in response.body[:512].lower()
