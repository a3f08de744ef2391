"""The work middleware in Scrapy's own spider-middleware chain: every response's unit completes once,
after its output, also when its callback raises (a dead letter then)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import scrapy
from scrapy.core.spidermw import SpiderMiddlewareManager
from scrapy.http import TextResponse
from scrapy.utils.test import get_crawler

from crawler.extensions.cursors import PAGES_META, UNIT_META, Cursors
from crawler.items.control import WorkDone
from crawler.spiders.base import SourceSpider
from crawler.spiders.npm.records import NpmPackage
from crawler.spiders.npm.spider import NpmSpider

SETTINGS = {
    "NPM_REGISTRY_URL": "http://127.0.0.1:9/",
    "EXTENSIONS": {"crawler.extensions.cursors.Cursors": 0},
    "SPIDER_MIDDLEWARES": {"crawler.middlewares.work.WorkMiddleware": 1000},
}


class Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def dead_letter(self, reason: str, **_: Any) -> None:
        self.reasons.append(reason)


@pytest.fixture
def chain(monkeypatch):
    crawler = get_crawler(NpmSpider, SETTINGS)
    crawler.spider = NpmSpider.from_crawler(crawler, packages="a")
    recorder = Recorder()
    monkeypatch.setattr(SourceSpider, "services", property(lambda self: recorder))
    manager = SpiderMiddlewareManager.from_crawler(crawler)
    return crawler, manager, recorder


def scrape(manager: SpiderMiddlewareManager, callback) -> list[Any]:
    request = scrapy.Request("http://127.0.0.1:9/a", callback=callback, meta={UNIT_META: "u1", PAGES_META: ("p1",)})
    response = TextResponse(request.url, body=b"{}", request=request)

    async def call(result, request):
        return request.callback(result)

    async def run() -> list[Any]:
        output = await manager.scrape_response_async(call, response, request)
        return [item async for item in output]

    return asyncio.run(run())


def test_output_then_one_work_done(chain):
    _, manager, recorder = chain

    def callback(response):
        yield NpmPackage(name="a")
        yield scrapy.Request("http://127.0.0.1:9/b")

    items = scrape(manager, callback)
    assert [type(item).__name__ for item in items] == ["NpmPackage", "Request", "WorkDone"]
    assert items[1].meta[UNIT_META] != "u1" and items[1].errback is not None  # its own unit; failures end well
    assert items[1].meta[PAGES_META] == ("p1",)  # and the pages of the response that yielded it
    assert recorder.reasons == []


def test_a_unit_that_no_cursor_waits_for_needs_no_work_done(chain):
    crawler, _, _ = chain
    request = scrapy.Request("http://127.0.0.1:9/a", meta={UNIT_META: "u1", PAGES_META: ()})
    assert crawler.get_extension(Cursors).finished(request.meta) is None  # a named fetch: nothing to release


def test_a_callback_that_raises_midway_keeps_its_output_and_completes_its_unit(chain):
    _, manager, recorder = chain

    def callback(response):
        yield NpmPackage(name="a")
        raise KeyError("missing")

    items = scrape(manager, callback)
    assert [type(item) for item in items] == [NpmPackage, WorkDone]
    assert items[1].failed and items[1].unit == "u1"
    assert recorder.reasons == ["callback_error: KeyError: 'missing'"]


def test_a_callback_that_raises_at_once_completes_its_unit(chain):
    crawler, manager, recorder = chain

    def callback(response):
        raise ValueError("boom")

    items = scrape(manager, callback)
    assert len(items) == 1 and isinstance(items[0], WorkDone) and items[0].failed
    assert recorder.reasons == ["callback_error: ValueError: boom"]
    assert crawler.get_extension(Cursors).outstanding == 0
