"""Requests due later wait in the scheduler (not in a download slot) and come out when due."""

from __future__ import annotations

import pytest
from scrapy import Request, Spider
from scrapy.utils.test import get_crawler

from crawler.scheduler import NOT_BEFORE_META, Scheduler


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scheduler(monkeypatch):
    clock = Clock()
    monkeypatch.setattr("crawler.scheduler.time.monotonic", clock)
    # the plain priority queue: the downloader-aware one needs a running engine
    crawler = get_crawler(Spider, {"SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.ScrapyPriorityQueue"})
    scheduler = Scheduler.from_crawler(crawler)
    scheduler.open(Spider("s"))
    yield scheduler, clock
    scheduler.close("finished")


def test_a_request_due_later_waits_and_others_pass_it(scheduler):
    scheduler, clock = scheduler
    assert scheduler.enqueue_request(Request("http://127.0.0.1/later", meta={NOT_BEFORE_META: clock.now + 30}))
    assert scheduler.enqueue_request(Request("http://127.0.0.1/now"))
    assert scheduler.has_pending_requests() and len(scheduler) == 2 and scheduler.delayed_count == 1
    assert scheduler.next_request().url == "http://127.0.0.1/now"
    assert scheduler.next_request() is None
    assert scheduler.has_pending_requests()  # the crawl is not idle while a retry waits
    clock.now += 30
    due = scheduler.next_request()
    assert due.url == "http://127.0.0.1/later" and NOT_BEFORE_META not in due.meta
    assert not scheduler.has_pending_requests() and len(scheduler) == 0


def test_waiting_requests_come_out_in_due_order(scheduler):
    scheduler, clock = scheduler
    for name, wait in (("c", 3), ("a", 1), ("b", 2)):
        scheduler.enqueue_request(Request(f"http://127.0.0.1/{name}", meta={NOT_BEFORE_META: clock.now + wait}))
    released = []
    for _ in range(3):
        clock.now += 1
        released.append(scheduler.next_request().url[-1])
        assert scheduler.next_request() is None  # nothing else is due yet
    assert released == ["a", "b", "c"]
    assert scheduler.crawler.stats.get_value("scheduler/delayed") == 3


def test_a_request_already_due_is_queued_at_once(scheduler):
    scheduler, clock = scheduler
    scheduler.enqueue_request(Request("http://127.0.0.1/past", meta={NOT_BEFORE_META: clock.now - 1}))
    assert scheduler.delayed_count == 0 and scheduler.next_request().url.endswith("/past")
