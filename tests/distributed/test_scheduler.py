"""The leasing scheduler on the machine's real Redis: what goes into the shared queue, and what comes out."""

from __future__ import annotations

import asyncio

import pytest
import redis
import scrapy
from scrapy.utils.test import get_crawler

from crawler.distributed.coordinator import Coordinator, Keys
from crawler.distributed.scheduler import LEASE_META, LeasingScheduler
from crawler.middlewares import CREDENTIAL_HEADERS_META
from crawler.spiders.github.middleware import GithubRateLimitMiddleware
from tests.conftest import REDIS_TEST_URL


class Spider(scrapy.Spider):
    name = "npm"


def open_scheduler(prefix: str) -> LeasingScheduler:
    server = redis.Redis.from_url(REDIS_TEST_URL)
    scheduler = LeasingScheduler(
        server,
        persist=True,
        queue_key=f"{prefix}:%(spider)s:requests",
        queue_cls="crawler.distributed.scheduler.LeasedPriorityQueue",
        dupefilter_key=f"{prefix}:%(spider)s:dupefilter",
    )
    scheduler.coordinator = Coordinator(server, Keys.for_spider(prefix, "npm"), worker="w1")
    settings = {"REDIS_URL": REDIS_TEST_URL, "SCHEDULER_DUPEFILTER_KEY": f"{prefix}:%(spider)s:dupefilter"}
    scheduler.open(Spider.from_crawler(get_crawler(Spider, settings_dict=settings)))
    return scheduler


def test_popped_requests_are_leased_and_a_retry_releases_the_old_lease(redis_prefix):
    scheduler = open_scheduler(redis_prefix)
    assert scheduler.enqueue_request(scrapy.Request("http://127.0.0.1:9/a", dont_filter=True))
    request = scheduler.next_request()
    assert request is not None and request.url.endswith("/a")
    lease = request.meta[LEASE_META]
    assert scheduler.coordinator.held() == 1
    retry = request.replace(dont_filter=True)  # what a retry middleware schedules
    assert scheduler.enqueue_request(retry)
    assert scheduler.coordinator.held() == 0  # the old lease is gone: the retry is in the queue
    again = scheduler.next_request()
    assert again is not None and again.meta[LEASE_META] != lease
    assert scheduler.next_request() is None


def test_duplicates_are_filtered_across_workers(redis_prefix):
    first, second = open_scheduler(redis_prefix), open_scheduler(redis_prefix)
    assert first.enqueue_request(scrapy.Request("http://127.0.0.1:9/left-pad"))
    assert not second.enqueue_request(scrapy.Request("http://127.0.0.1:9/left-pad"))
    assert len(first) == 1


def test_credentials_added_by_a_middleware_never_reach_the_shared_queue(redis_prefix):
    crawler = get_crawler(settings_dict={"GITHUB_TOKENS": "ghp_secret1"})
    middleware = GithubRateLimitMiddleware.from_crawler(crawler)
    request = scrapy.Request("http://127.0.0.1:9/users/octocat", dont_filter=True)
    asyncio.run(middleware.process_request(request))
    assert request.headers[b"Authorization"] == b"Bearer ghp_secret1"
    scheduler = open_scheduler(redis_prefix)
    scheduler.enqueue_request(request.replace())  # a retry's copy, as BackoffRetry schedules it
    stored = b"".join(scheduler.server.zrange(scheduler.coordinator.keys.queue, 0, -1))
    assert b"ghp_secret1" not in stored
    popped = scheduler.next_request()
    assert popped is not None and b"Authorization" not in popped.headers
    assert CREDENTIAL_HEADERS_META not in popped.meta


def test_callbacks_are_encoded_by_name_and_come_back_bound(redis_prefix):
    scheduler = open_scheduler(redis_prefix)
    spider = scheduler.spider
    request = scrapy.Request("http://127.0.0.1:9/x", callback=spider.parse, errback=spider.parse, meta={"k": 1})
    scheduler.enqueue_request(request)
    popped = scheduler.next_request()
    assert popped.callback == spider.parse and popped.errback == spider.parse and popped.meta["k"] == 1
    # what Scrapy's own encoding refuses, this one refuses too
    with pytest.raises(ValueError):
        scheduler.enqueue_request(scrapy.Request("http://127.0.0.1:9/y", callback=lambda r: None))


def test_pops_lease_a_batch_and_hand_it_out_in_priority_order(redis_prefix):
    scheduler = open_scheduler(redis_prefix)
    for i in range(10):
        scheduler.enqueue_request(scrapy.Request(f"http://127.0.0.1:9/{i}", priority=i, dont_filter=True))
    first = scheduler.next_request()
    assert first.url.endswith("/9")  # the highest priority first
    assert scheduler.coordinator.held() == 8  # one round trip leased a batch to this worker
    assert len(scheduler) == 9 and scheduler.has_pending_requests()
    urls = [scheduler.next_request().url[-1] for _ in range(9)]
    assert urls == ["8", "7", "6", "5", "4", "3", "2", "1", "0"]
    assert scheduler.next_request() is None and not scheduler.has_pending_requests()
