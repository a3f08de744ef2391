"""Record every crawl in ``ingestion_runs``: start, end, finish reason, items, errors, bytes, stats."""

from __future__ import annotations

import json
import logging
import socket
from datetime import timedelta
from functools import cached_property
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler

from crawler.config import get_float
from crawler.extensions.services import Services
from crawler.storage.reconcile import reconcile

logger = logging.getLogger(__name__)


class RunRecorder:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @cached_property
    def services(self) -> Services:
        # looked up on first use: extensions cannot reach each other while they are being built
        return self.crawler.get_extension(Services)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RunRecorder:
        recorder = cls(crawler)
        crawler.signals.connect(recorder.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(recorder.spider_closed, signal=signals.spider_closed)
        return recorder

    async def spider_opened(self, spider: Spider) -> None:
        self.crawler.stats.set_value("run_id", self.services.run_id)
        await self.services.in_meta_thread(
            self.services.meta.start_run,
            self.services.run_id,
            getattr(spider, "source", spider.name),
            spider.name,
            getattr(spider, "arguments", {}),
            socket.gethostname(),
        )
        # what an earlier run killed mid-write left behind, before this run writes
        namespaces = [record_type.namespace for record_type in getattr(spider, "records", ())]
        grace = timedelta(seconds=get_float(self.crawler.settings, "RECONCILE_GRACE_SECONDS", 600.0, minimum=0))
        await self.services.in_meta_thread(self._reconcile, namespaces, grace)

    def _reconcile(self, namespaces: list[str], grace: timedelta) -> None:
        # on the metadata thread: the Iceberg catalog is opened there, as every later commit uses it
        reconcile(self.services.store, self.services.meta, namespaces, grace=grace, tables=self.services.iceberg)

    async def spider_closed(self, spider: Spider, reason: str) -> None:
        stats = self.crawler.stats.get_stats()
        await self.services.in_meta_thread(
            self.services.meta.finish_run,
            self.services.run_id,
            reason,
            int(stats.get("store/records", 0)),
            int(stats.get("log_count/ERROR", 0)),
            int(stats.get("dead_letters", 0)),
            int(stats.get("store/bytes", 0)),
            json.loads(json.dumps(stats, default=_jsonable)),
        )
        namespaces = {
            key.removeprefix("store/records/"): value
            for key, value in stats.items()
            if key.startswith("store/records/")
        }
        logger.info(
            "run %s (%s): stored %d records%s in %d batches, %s bytes; %d dead letters",
            self.services.run_id,
            reason,
            stats.get("store/records", 0),
            " (" + ", ".join(f"{ns} {n}" for ns, n in sorted(namespaces.items())) + ")" if namespaces else "",
            stats.get("store/batches", 0),
            f"{stats.get('store/bytes', 0):,}",
            stats.get("dead_letters", 0),
        )


def _jsonable(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
