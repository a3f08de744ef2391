"""Prototypes of the changes proposed for the npm crawl, for ``bench.npm_crawl --platform-set``.

Nothing here is used by the platform itself. Each prototype subclasses a platform component and is
swapped in with ``-s`` overrides, so the gain of a proposed change can be measured before ``crawler/`` is
edited, e.g.::

    python -m bench.npm_crawl --only platform --packages 20000 \\
        --platform-set SPIDER_MODULES=bench.experiments.npm_levers

(The lazy start requests, the unfiltered named fetches and ``-a shard=i/n`` prototyped here have landed in
``crawler/spiders``.)
* :class:`AsyncioStorePipeline`: the store pipeline without Twisted (asyncio task instead of
  ``LoopingCall``, ``asyncio.to_thread`` instead of ``deferToThread``), so the crawl can run with
  ``TWISTED_REACTOR_ENABLED=False`` and the aiohttp download handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.store import StorePipeline
from crawler.pipelines.writer import BatchWriter

logger = logging.getLogger(__name__)


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
