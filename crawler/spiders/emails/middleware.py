"""The email-pattern source's API keys and Hunter's credit budget, in one downloader middleware.

A request marks the API it is for in ``meta["emails_api"]`` (``hunter`` or ``clearbit``). For those, and
only when the request goes to that API's configured origin, the key is added as a header (Hunter:
``X-API-KEY``; Clearbit: ``Authorization: Bearer``), marked as a credential so a persisted queue never
keeps it; the key is never in a URL, a log line or a stat.

Hunter's credits: every request sent to Hunter — first pages, next pages, re-sends — is counted
against ``HUNTER_MAX_REQUESTS`` *before* it is sent; the one that would exceed it is not sent
(``IgnoreRequest``), so the budget is never exceeded. Hunter's answers: 403 (rate limit: 15/s,
500/min) and 202 (not ready yet) are sent again after a back-off, up to
``HUNTER_RATE_LIMIT_RETRIES`` times; 429 (the plan's usage is spent) stops all further Hunter
requests of the run and is never retried; 401 (bad key) likewise.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from urllib.parse import urlsplit

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.http import Response

from crawler.middlewares import CREDENTIAL_HEADERS_META

logger = logging.getLogger(__name__)
#: request meta: which API the request is for
API_META = "emails_api"
HUNTER, CLEARBIT = "hunter", "clearbit"
_RESENDS_META = "emails_resends"


class NotSent(IgnoreRequest):
    """A request not sent: Hunter's budget is spent or Hunter stopped answering (401, 429); Clearbit is retired."""


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


@dataclass
class HunterBudget:
    """What one run may still spend at Hunter, and why it stopped (None: it has not)."""

    max_requests: int
    sent: int = 0
    #: ``budget_spent``, ``usage_exhausted`` (429), ``unauthorized`` (401)
    stopped: str | None = None

    def can_spend(self) -> bool:
        return self.stopped is None and self.sent < self.max_requests

    def spend(self) -> bool:
        """Count one request; False when it may not be sent."""
        if not self.can_spend():
            if self.stopped is None:
                self.stopped = "budget_spent"
            return False
        self.sent += 1
        return True


@dataclass(frozen=True)
class ApiKey:
    header: str
    value: str
    #: the API's origins: the key goes to these only (Clearbit's lookups live on two hosts)
    origins: frozenset[tuple[str, str, int | None]]


class EmailsApiMiddleware:
    def __init__(self, crawler: Crawler, keys: dict[str, ApiKey], max_resends: int) -> None:
        self.crawler = crawler
        self.keys = keys
        self.max_resends = max_resends

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> EmailsApiMiddleware:
        settings = crawler.settings
        keys: dict[str, ApiKey] = {}
        hunter_key, hunter_url = settings.get("HUNTER_API_KEY"), settings.get("HUNTER_API_URL")
        if hunter_key and hunter_url:
            keys[HUNTER] = ApiKey("X-API-KEY", hunter_key, frozenset({origin(hunter_url)}))
        clearbit_key = settings.get("CLEARBIT_API_KEY")
        urls = [settings.get("CLEARBIT_COMPANY_URL"), settings.get("CLEARBIT_PERSON_URL")]
        if clearbit_key and any(urls):
            origins = frozenset(origin(url) for url in urls if url)
            keys[CLEARBIT] = ApiKey("Authorization", f"Bearer {clearbit_key}", origins)
        return cls(crawler, keys, settings.getint("HUNTER_RATE_LIMIT_RETRIES", 3))

    @property
    def budget(self) -> HunterBudget | None:
        return getattr(self.crawler.spider, "hunter_budget", None)

    async def process_request(self, request: Request) -> None:
        api = request.meta.get(API_META)
        for header in ("X-API-KEY", "Authorization"):
            request.headers.pop(header, None)  # a re-sent copy, or a request that left the API
        key = self.keys.get(api) if api else None
        if key is None:
            return None
        if origin(request.url) not in key.origins:
            self.crawler.stats.inc_value("emails/requests/elsewhere_without_key")
            return None
        if api == HUNTER:
            budget = self.budget
            if budget is not None and not budget.spend():
                self.crawler.stats.inc_value("emails/hunter/not_sent")
                raise NotSent(f"hunter: not sent ({budget.stopped})")
            self.crawler.stats.inc_value("emails/hunter/requests")
        else:
            if getattr(self.crawler.spider, "clearbit_retired", None):
                # requests queued before the endpoint was found retired are not sent
                self.crawler.stats.inc_value("emails/clearbit/not_sent")
                raise NotSent("clearbit: not sent (the endpoint is retired)")
            self.crawler.stats.inc_value(f"emails/{api}/requests")
        request.headers[key.header] = key.value
        request.meta[CREDENTIAL_HEADERS_META] = [key.header]
        return None

    async def process_response(self, request: Request, response: Response) -> Request | Response:
        if request.meta.get(API_META) != HUNTER:
            return response
        budget = self.budget
        if response.status == 429:
            request.meta["dont_retry"] = True  # the plan is used up: a retry spends nothing but time
            if budget is not None and budget.stopped != "usage_exhausted":
                budget.stopped = "usage_exhausted"
                logger.error("hunter: the plan's usage is exhausted (429): no more Hunter requests this run")
            self.crawler.stats.inc_value("emails/hunter/usage_exhausted")
        elif response.status == 401:
            if budget is not None and budget.stopped != "unauthorized":
                budget.stopped = "unauthorized"
                logger.error("hunter: the API key was refused (401): no more Hunter requests this run")
        elif response.status in (403, 202):
            resends = request.meta.get(_RESENDS_META, 0)
            if resends < self.max_resends and (budget is None or budget.can_spend()):
                why = "rate_limited" if response.status == 403 else "not_ready"
                self.crawler.stats.inc_value(f"emails/hunter/resent/{why}")
                await asyncio.sleep(_backoff(response, resends))
                again = request.replace(dont_filter=True)
                again.meta[_RESENDS_META] = resends + 1
                return again
        return response


def _backoff(response: Response, attempt: int) -> float:
    retry_after = response.headers.get(b"Retry-After")
    try:
        if retry_after is not None:
            return min(float(retry_after), 60.0)
    except ValueError:
        pass
    return min(2.0**attempt, 60.0) * random.uniform(0.5, 1.0)
