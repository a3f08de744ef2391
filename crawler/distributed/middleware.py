"""Acknowledge a leased request after everything its callback yielded (distributed crawls only)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response

from crawler.distributed.extension import Distributed


class LeaseAckMiddleware:
    """Appends a :class:`~crawler.items.control.LeaseDone` to each callback's output.

    Errback output of a download error does not pass through spider middlewares:
    :meth:`SourceSpider.errback` acknowledges its own (an errback run inside the middleware chain, for an
    HTTP error status, is acknowledged twice: harmless). A callback that raises leaves its lease to the
    worker's idle clean-up.
    """

    def __init__(self, distributed: Distributed) -> None:
        self.distributed = distributed

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeaseAckMiddleware:
        distributed = crawler.get_extension(Distributed)
        if distributed is None:
            raise NotConfigured("not a distributed crawl")
        return cls(distributed)

    def process_spider_output(self, response: Response, result: Iterable[Any]) -> Iterable[Any]:
        yield from result
        yield from self.distributed.lease_done(response.meta)

    async def process_spider_output_async(self, response: Response, result: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for item in result:
            yield item
        for ack in self.distributed.lease_done(response.meta):
            yield ack
