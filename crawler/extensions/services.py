"""Shared services of one crawl: configuration, run id, object store, metadata DB and dead letters.

Enabled in ``EXTENSIONS``; other components reach it with ``crawler.get_extension(Services)``.
Metadata writes go through one worker thread so they stay off the reactor *and* keep their order: a
dead letter submitted before a cursor commit is durable before that commit (DESIGN §3.1).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.crawler import Crawler

from crawler.config import IngestionConfig, new_run_id
from crawler.meta import MetaDB
from crawler.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

logger = logging.getLogger(__name__)


class Services:
    def __init__(self, crawler: Crawler, config: IngestionConfig) -> None:
        self.crawler = crawler
        self.config = config
        self._meta_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meta")

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Services:
        # a bad setting is an error, not a reason to run without these services (every other component needs
        # them): SettingError stops the crawl before it starts
        services = cls(crawler, IngestionConfig.from_settings(crawler.settings))
        # engine_stopped comes after every spider_closed handler (pipelines, run recorder) is done
        crawler.signals.connect(services.engine_stopped, signal=signals.engine_stopped)
        return services

    @cached_property
    def run_id(self) -> str:
        """RUN_ID if set; else the job id scrapyd gives the spider (``_job``); else a new id."""
        spider = self.crawler.spider
        return self.config.run_id or getattr(spider, "job_id", None) or new_run_id()

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(
            self.config.storage_uri,
            connect_timeout=self.config.s3_connect_timeout,
            read_timeout=self.config.s3_read_timeout,
        )

    @cached_property
    def meta(self) -> MetaDB:
        return MetaDB.connect(
            self.config.meta_db_url,
            payload_limit=self.config.dead_letter_sample_bytes,
            statement_timeout=self.config.meta_db_timeout,
            retry_seconds=self.config.meta_db_retry_seconds,
        )

    @cached_property
    def iceberg(self) -> IcebergTables | None:
        """The Iceberg tables kept in step with the stored files; ``None`` when ICEBERG_ENABLED is off.
        Used on the metadata thread only (commits are ordered like the index they precede)."""
        if self.config.iceberg is None:
            return None
        from crawler.storage.iceberg import open_tables

        return open_tables(self.config.iceberg, self.store, statement_timeout=self.config.meta_db_timeout)

    def in_meta_thread(self, func: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Run a metadata call on the ordered metadata thread; await the result."""
        return asyncio.wrap_future(self._meta_thread.submit(func, *args, **kwargs))

    def dead_letter(
        self,
        reason: str,
        *,
        url: str | None = None,
        payload: bytes | str | None = None,
        attempts: int = 1,
    ) -> asyncio.Future[Any]:
        """Record a message that could not be processed; the crawl goes on (DESIGN §3.3)."""
        stats = self.crawler.stats
        assert stats is not None
        stats.inc_value("dead_letters")
        stats.inc_value(f"dead_letters/{reason.split(':', 1)[0]}")
        logger.warning("dead letter: %s (%s)", reason, url)
        return self.in_meta_thread(
            self.meta.add_failed,
            self.crawler.spider.name if self.crawler.spider else "unknown",
            reason,
            url=url,
            payload=payload,
            run_id=self.run_id,
            attempts=attempts,
        )

    def engine_stopped(self) -> None:
        self._meta_thread.shutdown(wait=True)
        if "meta" in self.__dict__:
            self.meta.close()
