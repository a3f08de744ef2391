"""The one place that knows when a request's work is done (see :mod:`crawler.extensions.cursors`).

A spider middleware, first in the chain (closest to the spider). For every request that ``start()`` or a
callback yields it assigns a unit of work and the cursor pages it belongs to; after each callback's
output it appends the unit's :class:`~crawler.items.control.WorkDone`, then asks the spider for more work
(``SourceSpider.more_work``). A callback that raises becomes a dead letter, and its unit still
completes. (An errback of a download error runs outside spider middlewares: the base spider's errback
does the same there.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy.exceptions import CloseSpider
from scrapy.http import Response

from crawler.extensions.cursors import FAILED_META, Cursors

logger = logging.getLogger(__name__)
#: response meta: this middleware is reading the callback's output
OUTPUT_META = "work_output"


class WorkMiddleware:
    def __init__(self, crawler: Crawler, cursors: Cursors) -> None:
        self.crawler = crawler
        self.cursors = cursors

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> WorkMiddleware:
        cursors = crawler.get_extension(Cursors)
        assert cursors is not None, "crawler.extensions.cursors.Cursors must be enabled"
        return cls(crawler, cursors)

    async def process_start(self, start: AsyncIterator[Any]) -> AsyncIterator[Any]:
        index = 0
        async for item in start:
            index += self._place(None, item, index)
            yield item

    def _place(self, parent: Response | None, item: Any, index: int) -> bool:
        if not isinstance(item, Request):
            return False
        self.cursors.adopt(parent.meta if parent is not None else None, item, index)
        if item.errback is None:  # a failed download must end as a dead letter and complete its unit
            item.errback = self.crawler.spider.errback
        return True

    def _after(self, response: Response) -> Iterator[Any]:
        done = self.cursors.finished(response.meta)
        if done is not None:
            yield done
        yield from self._more(response)

    def _more(self, response: Response) -> Iterator[Any]:
        more_work = getattr(self.crawler.spider, "more_work", None)
        if more_work is None:
            return
        for index, request in enumerate(more_work()):
            self._place(None, request, index)
            yield request

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterator[Any]:
        response.meta[OUTPUT_META] = True
        index = 0
        for item in result:
            index += self._place(response, item, index)
            yield item
        yield from self._after(response)

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        response.meta[OUTPUT_META] = True
        index = 0
        async for item in result:
            index += self._place(response, item, index)
            yield item
        for item in self._after(response):
            yield item

    def process_spider_exception(self, response: Response, exception: Exception) -> Iterable[Any] | None:
        """A callback that raised: a dead letter, and its unit completes (what it yielded before stays).
        ``CloseSpider`` is left to Scrapy: the crawl stops, and the unit holds its pages back."""
        if isinstance(exception, CloseSpider):
            return None
        spider = self.crawler.spider
        reason = f"callback_error: {type(exception).__name__}: {str(exception)[:200]}"
        logger.error("%s raised on %s", getattr(response.request, "callback", None), response.url, exc_info=exception)
        dead_letter = getattr(spider, "dead_letter", None)
        if dead_letter is not None:
            dead_letter(reason, response=response, payload=response.body)
        response.meta[FAILED_META] = True
        if response.meta.get(OUTPUT_META):
            return []  # raised while its output was read: process_spider_output completes the unit
        return list(self._after(response))
