import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from scrapy import Request
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Response
from scrapy.utils.test import get_crawler

from crawler.middlewares.retry import FIRST_ATTEMPT_META, BackoffRetryMiddleware
from crawler.scheduler import NOT_BEFORE_META
from crawler.spiders.npm.spider import NpmSpider


def middleware(**settings) -> BackoffRetryMiddleware:
    # the npm policy declares backoff_base=1 and backoff_max=120
    crawler = get_crawler(
        NpmSpider,
        {"RETRY_AFTER_MAX": 100, "NPM_REGISTRY_URL": "http://127.0.0.1:1/", **settings},
        prevent_warnings=False,
    )
    return BackoffRetryMiddleware.from_crawler(crawler)


class Waits(list):
    """The waits the retries were given (seconds from when they were returned to when they are due)."""

    def of(self, retry: Request) -> Request:
        self.append(round(retry.meta[NOT_BEFORE_META] - time.monotonic()))
        return retry


@pytest.fixture
def waiting() -> tuple[BackoffRetryMiddleware, Waits]:
    """A middleware of an npm crawl; the retries it returns carry when they are due."""
    mw = middleware()
    mw.crawler.spider = NpmSpider.from_crawler(mw.crawler, packages="x")
    return mw, Waits()


def response(status: int, retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Response("http://127.0.0.1/x", status=status, headers=headers)


def test_retry_after_seconds_and_dates_are_read_and_capped():
    mw = middleware()
    mw.retry_after_max = 100
    assert mw.retry_after(response(429, "7")) == 7
    assert mw.retry_after(response(429, "100000")) == 100
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= mw.retry_after(response(503, soon)) <= 30
    assert mw.retry_after(response(503, "garbage")) is None
    assert mw.retry_after(response(503)) is None


def test_backoff_grows_exponentially_with_jitter_and_cap():
    mw = middleware()
    delays = [mw.backoff(Request("http://127.0.0.1/", meta={"retry_times": n})) for n in range(8)]
    assert 0.75 <= delays[0] <= 1.25
    assert 3 <= delays[2] <= 5
    assert 64 * 0.75 <= delays[6] <= 64 * 1.25
    assert max(delays) <= 120 * 1.25


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_waits_for_retry_after_then_retries(status, waiting):
    mw, waited = waiting
    request = Request("http://127.0.0.1/x")
    result = await mw.process_response(request, response(status, "3"))
    assert isinstance(result, Request) and result.meta["retry_times"] == 1
    waited.of(result)
    assert waited == [3]


async def test_gives_up_after_the_last_retry(waiting):
    mw, _ = waiting
    request = Request("http://127.0.0.1/x", meta={"retry_times": mw.max_retry_times})
    final = response(429, "1")
    assert await mw.process_response(request, final) is final


@pytest.fixture
def without_private_retry(monkeypatch):
    """Scrapy's stock middleware without its private ``_retry``: retries must come from the public
    ``get_retry_request``."""
    monkeypatch.delattr(RetryMiddleware, "_retry", raising=False)


async def test_retries_are_built_with_the_public_get_retry_request(without_private_retry, waiting):
    mw, waited = waiting
    request = Request("http://127.0.0.1/x", priority=5, meta={"priority_adjust": -2})
    retry = waited.of(await mw.process_response(request, response(503, "2")))
    assert isinstance(retry, Request) and retry.meta["retry_times"] == 1 and retry.dont_filter
    assert retry.priority == 3 and waited == [2]
    stats = mw.crawler.stats
    assert stats.get_value("retry/count") == 1
    assert stats.get_value("retry/reason_count/503 Service Unavailable") == 1
    assert stats.get_value("retry/retry_after_honoured") == 1

    # an exception: backed off, not Retry-After; a request's own max_retry_times is honoured
    retry = await mw.process_exception(request, TimeoutError())
    assert isinstance(retry, Request) and retry.meta["retry_times"] == 1
    assert 0.7 <= retry.meta[NOT_BEFORE_META] - time.monotonic() <= 1.25
    spent = Request("http://127.0.0.1/x", meta={"retry_times": 1, "max_retry_times": 1})
    assert await mw.process_exception(spent, TimeoutError()) is None
    assert stats.get_value("retry/max_reached") == 1


async def test_a_hostile_retry_after_is_capped_by_the_policy_and_never_slept_on(waiting):
    mw, waited = waiting
    mw.retry_after_max = 5
    started = time.monotonic()
    retry = await mw.process_response(Request("http://127.0.0.1/x"), response(429, "999999999"))
    assert time.monotonic() - started < 1  # returned at once: the wait is the scheduler's
    waited.of(retry)
    assert waited == [5]


async def test_no_retry_past_the_request_deadline(waiting):
    mw, _ = waiting
    mw.deadline = 60
    old = Request("http://127.0.0.1/x", meta={FIRST_ATTEMPT_META: time.time() - 59.5})
    final = response(503, "5")  # 59.5 s + 5 s > 60 s
    assert await mw.process_response(old, final) is final
    assert (
        await mw.process_exception(old.replace(), TimeoutError()) is None
    )  # 59.5 s + 0.75..1.25 s back-off: past it too
    young = Request("http://127.0.0.1/x")
    retry = await mw.process_response(young, response(503, "5"))
    assert isinstance(retry, Request) and retry.meta[FIRST_ATTEMPT_META] == young.meta[FIRST_ATTEMPT_META]
    assert mw.crawler.stats.get_value("retry/deadline_reached") == 2


def test_the_policy_sets_the_cap_and_the_deadline():
    mw = middleware(RETRY_AFTER_MAX=None)
    assert mw.retry_after_max == NpmSpider.declaration.policy.retry_after_max
    assert mw.deadline == NpmSpider.declaration.policy.request_deadline
