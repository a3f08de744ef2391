"""Record every crawl in ``ingestion_runs``: start, end, finish reason, items, errors, bytes, stats."""

from __future__ import annotations

import json
import socket
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.utils.defer import maybe_deferred_to_future

from crawler.extensions.services import Services


class RunRecorder:
    def __init__(self, crawler: Crawler, services: Services) -> None:
        self.crawler = crawler
        self.services = services

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RunRecorder:
        recorder = cls(crawler, crawler.get_extension(Services))
        crawler.signals.connect(recorder.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(recorder.spider_closed, signal=signals.spider_closed)
        return recorder

    async def spider_opened(self, spider: Spider) -> None:
        self.crawler.stats.set_value("run_id", self.services.run_id)
        await maybe_deferred_to_future(
            self.services.in_meta_thread(
                self.services.meta.start_run,
                self.services.run_id,
                getattr(spider, "source", spider.name),
                spider.name,
                getattr(spider, "arguments", {}),
                socket.gethostname(),
            )
        )

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        stats = self.crawler.stats.get_stats()
        await maybe_deferred_to_future(
            self.services.in_meta_thread(
                self.services.meta.finish_run,
                self.services.run_id,
                reason,
                int(stats.get("store/records", 0)),
                int(stats.get("log_count/ERROR", 0)),
                int(stats.get("dead_letters", 0)),
                int(stats.get("store/bytes", 0)),
                json.loads(json.dumps(stats, default=_jsonable)),
            )
        )


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
