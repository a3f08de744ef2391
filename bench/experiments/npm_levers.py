"""Prototypes of the changes proposed for the npm crawl, for ``bench.npm_crawl --platform-set``.

Nothing here is used by the platform itself. Each prototype subclasses a platform component and is
swapped in with ``-s`` overrides, so the gain of a proposed change can be measured before ``crawler/`` is
edited, e.g.::

    python -m bench.npm_crawl --only platform --packages 20000 \\
        --platform-set SPIDER_MODULES=bench.experiments.npm_levers

* :class:`LazyNpmSpider` (registered as ``npm``, so ``scrapy crawl npm`` picks it up when
  ``SPIDER_MODULES`` names this module): at most ``start_backlog`` start requests wait in the scheduler,
  instead of all N up front, and named fetches skip the duplicate filter (the names are already
  de-duplicated). ``-a shard=i/n`` makes it fetch only every n-th name, for ``--platform-shards n``.
* :class:`AsyncioStorePipeline`: the store pipeline without Twisted (asyncio task instead of
  ``LoopingCall``, ``asyncio.to_thread`` instead of ``deferToThread``), so the crawl can run with
  ``TWISTED_REACTOR_ENABLED=False`` and the aiohttp download handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy import signals

from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.store import StorePipeline
from crawler.pipelines.writer import BatchWriter
from crawler.spiders.npm import NpmSpider

logger = logging.getLogger(__name__)


class LazyNpmSpider(NpmSpider):
    name = "npm"
    #: start requests allowed to wait in the scheduler before start() pauses
    start_backlog = 1000

    def __init__(self, *args: Any, shard: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if shard:
            # -a shard=i/n: this process takes every n-th name, so n processes share the crawl (and the cores).
            # A stable hash of the name would be the production choice; the index keeps shards exactly even.
            index, count = (int(part) for part in shard.split("/"))
            self.names = list(dict.fromkeys(self.names))[index::count]

    async def start(self) -> AsyncIterator[Any]:
        # Scrapy drains start() into the scheduler whenever the downloader is full: with 100,000 names that
        # is 100,000 Request objects held in memory at once. Pausing once `start_backlog` of them wait keeps
        # memory flat. Scrapy's documented "lazy start" pattern waits on every request once the downloader
        # is busy, which costs a signal round trip per request; a backlog amortizes that over many.
        engine = self.crawler.engine
        async for item_or_request in super().start():
            scheduler = engine.scheduler
            if scheduler is not None and len(scheduler) >= self.start_backlog and engine.needs_backout():
                await self.crawler.signals.wait_for(signals.scheduler_empty)
            yield item_or_request

    def packument_request(
        self, name: str, *, page: int | None = None, change_rev: str | None = None, attempt: int = 0
    ) -> scrapy.Request:
        request = super().packument_request(name, page=page, change_rev=change_rev, attempt=attempt)
        if self.mode == "named":
            # start() already de-duplicated the names: fingerprinting each request again is pure cost.
            request.dont_filter = True
        return request


class AsyncioStorePipeline(StorePipeline):
    """StorePipeline on plain asyncio: needs no Twisted reactor."""

    def open_spider(self) -> None:
        self.writer = BatchWriter(self.services.store, self.services.config.parquet_compression)
        self.index = PartitionIndex(self.services.store, self.services.meta)
        self._idle_task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._idle_loop_task())

    async def _idle_loop_task(self) -> None:
        interval = max(self.services.config.batch_idle_seconds / 2, 0.05)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush_idle()
            except Exception:
                logger.exception("idle flush failed")

    async def _flush(self, batch: Batch) -> None:
        self.in_flight[id(batch)] = batch
        try:
            objects = await asyncio.to_thread(self.writer.write, batch)
            await self.services.in_meta_thread(self.index.record, objects, self.services.run_id)
        except Exception:
            if self.lost_receipt is None or batch.first_receipt < self.lost_receipt:
                self.lost_receipt = batch.first_receipt
            self.crawler.stats.inc_value("store/batch_failures")
            logger.exception("could not store a batch of %d %s records", len(batch), batch.record_type.namespace)
            raise
        finally:
            del self.in_flight[id(batch)]
        stats = self.crawler.stats
        stats.inc_value("store/batches")
        stats.inc_value("store/records", len(batch))
        stats.inc_value("store/bytes", sum(obj.bytes for obj in objects))
        stats.inc_value(f"store/records/{batch.record_type.namespace}", len(batch))
        await self._save_ready_cursors()

    async def close_spider(self) -> None:
        if self._idle_task is not None:
            self._idle_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._idle_task
            self._idle_task = None
        for batch in self.batcher.take_all():
            await self._flush(batch)
        await self._save_ready_cursors()
