"""Batch stamped records, write each batch, index it, and only then advance the cursors.

The order is the invariant of DESIGN §3.1: a checkpoint is saved to ``sync_state`` only after every
record that arrived before it is in storage and indexed. Writing happens in Twisted's thread pool;
indexing and cursor saves go through the ordered metadata thread (see :mod:`crawler.extensions.services`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.utils.defer import deferred_from_coro, maybe_deferred_to_future
from twisted.internet import task, threads
from twisted.internet.defer import Deferred

from crawler.distributed.extension import Distributed
from crawler.extensions.cursors import Cursors
from crawler.extensions.services import Services
from crawler.items.control import Checkpoint, WorkDone
from crawler.pipelines.batching import Batch, Batcher
from crawler.pipelines.columnar import StampedTable
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.ledger import CursorLedger
from crawler.pipelines.normalize import StampedRecord
from crawler.pipelines.writer import BatchWriter

logger = logging.getLogger(__name__)
#: the finish reason of a crawl stopped because a batch could not be stored
STORE_FAILED = "store_failed"
#: back-off between attempts to store a batch (seconds), doubling up to the maximum
STORE_RETRY_FIRST_DELAY = 1.0
STORE_RETRY_MAX_DELAY = 30.0


class StoreStopping(RuntimeError):
    """A batch was not tried: another was given up, and the crawl is stopping."""


class StorePipeline:
    def __init__(self, crawler: Crawler, services: Services) -> None:
        self.crawler = crawler
        self.services = services
        #: set when the crawl is shared by workers through Redis (crawler.distributed)
        self.distributed = crawler.get_extension(Distributed)
        self.cursors = crawler.get_extension(Cursors)
        config = services.config
        self.batcher = Batcher(
            config.batch_max_records,
            config.batch_max_bytes,
            config.batch_idle_seconds,
            config.columnar_batch_max_records,
            config.columnar_batch_max_bytes,
        )
        self.ledger = CursorLedger()
        self.receipt = 0  # arrival number of the last record or checkpoint
        self.in_flight: dict[int, Batch] = {}  # id(batch) -> batch being written
        # Receipt of the first record of a batch that could not be stored: no cursor passes it this run.
        self.lost_receipt: int | None = None
        self._closing = False  # the crawl is ending (or was told to): no need to stop it
        self._stopping: asyncio.Future[None] | None = None
        self._idle_loop: task.LoopingCall | None = None
        self._idle_loop_done: Deferred[Any] | None = None
        self._spider_idle_flush: Deferred[Any] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> StorePipeline:
        pipeline = cls(crawler, crawler.get_extension(Services))
        crawler.signals.connect(pipeline.spider_idle, signal=signals.spider_idle)
        return pipeline

    def spider_idle(self) -> None:
        """Nothing is being crawled: store what is batched and apply what the ledger holds now, rather
        than after BATCH_IDLE_SECONDS. A distributed worker stays open while others work, and they may be
        waiting for its acknowledgements."""
        if (self.batcher or self.ledger) and self._spider_idle_flush is None:
            self._spider_idle_flush = deferred_from_coro(self._flush_open())

    async def _flush_open(self) -> None:
        try:
            for batch in self.batcher.take_all():
                await self._flush(batch)
            await self._save_ready_cursors()
        finally:
            self._spider_idle_flush = None

    def open_spider(self) -> None:
        self.writer = BatchWriter(self.services.store, self.services.config.parquet_compression)
        # the Iceberg tables are opened by the first commit, on the metadata thread (as every commit is:
        # they keep the order of the index); a catalog that cannot be opened fails the store, which retries
        services = self.services
        self.index = PartitionIndex(services.store, services.meta, lambda: services.iceberg)
        interval = max(self.services.config.batch_idle_seconds / 2, 0.05)
        self._idle_loop = task.LoopingCall(lambda: deferred_from_coro(self._flush_idle()))
        self._idle_loop_done = self._idle_loop.start(interval, now=False).addErrback(
            lambda failure: logger.error("idle flush loop failed", exc_info=failure.value)
        )

    async def process_item(self, item: Any) -> Any:
        for checkpoint in self.cursors.take_released():  # positions with nothing left to wait for
            self.ledger.add(checkpoint, self.receipt)
        if isinstance(item, WorkDone):
            if self.distributed is None:
                # the unit's records arrived before it: checkpoints it releases come after them
                for checkpoint in self.cursors.complete(item):
                    self.ledger.add(checkpoint, self.receipt)
            else:
                self.ledger.add(item, self.receipt)  # acknowledged in Redis once what came before is stored
            # Applied later, after the data before it; not a scraped item.
            raise DropItem(f"control item {item}", log_level="DEBUG")
        if isinstance(item, StampedTable):
            return await self._add_table(item)
        if not isinstance(item, StampedRecord):
            return item
        self.receipt += 1
        full = self.batcher.add(item.record_type, item.row, self.receipt)
        if full is not None:
            await self._flush(full)  # back-pressure: this item waits for its batch to be stored
        return item

    async def _add_table(self, item: StampedTable) -> StampedTable:
        """A columnar item: one receipt for all its rows (a checkpoint after it waits for all of them)."""
        self.receipt += 1
        if len(item) != 1:  # Scrapy counts the item once; the stats count records
            self.crawler.stats.inc_value("item_scraped_count", len(item) - 1)
        if not len(item):
            return item
        day = item.table.column("_ingested_at")[0].as_py().date()
        for full in self.batcher.add_table(item.record_type, item.table, day, self.receipt):
            await self._flush(full)  # back-pressure, as for single records
        return item

    async def _store(self, batch: Batch) -> list[Any]:
        """Write and index a batch; a failing store is retried with back-off (1 s doubling to 30 s) for
        up to STORE_RETRY_SECONDS, so an outage of minutes loses nothing and holds the cursors meanwhile.
        Once a batch has been given up the crawl is stopping, and the batches still in flight stop too,
        even those queued for the metadata thread: a store that is down would otherwise hold the stop for
        a try (a timeout) per batch. They are fetched again by the next run, as the lost one is."""
        deadline = time.monotonic() + self.services.config.store_retry_seconds
        delay = STORE_RETRY_FIRST_DELAY
        while True:
            try:
                objects = await maybe_deferred_to_future(
                    threads.deferToThread(self._unless_stopping, self.writer.write, batch)
                )
                run_id = self.services.run_id
                await self.services.in_meta_thread(self._unless_stopping, self.index.record, objects, run_id)
                return objects
            except StoreStopping:
                raise
            except Exception as exc:
                if time.monotonic() + delay > deadline or self.lost_receipt is not None:
                    raise
                self.crawler.stats.inc_value("store/retries")
                logger.warning(
                    "could not store a batch of %d %s records (%s: %s); retrying in %.0f s",
                    len(batch),
                    batch.record_type.namespace,
                    type(exc).__name__,
                    str(exc)[:200],
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_DELAY)

    def _pin_below(self, batch: Batch) -> None:
        """Not stored: pin the cursors below these rows so that the next run fetches them again."""
        if self.lost_receipt is None or batch.first_receipt < self.lost_receipt:
            self.lost_receipt = batch.first_receipt

    def _unless_stopping(self, step: Any, *args: Any) -> Any:
        """Run a step of storing a batch, unless a batch was given up meanwhile (checked in the step's
        thread, when its turn comes)."""
        if self.lost_receipt is not None:
            raise StoreStopping("not tried: a batch was given up and the crawl is stopping")
        return step(*args)

    async def _flush(self, batch: Batch) -> None:
        self.in_flight[id(batch)] = batch
        try:
            objects = await self._store(batch)
        except StoreStopping:
            self._pin_below(batch)
            self.crawler.stats.inc_value("store/batches_not_tried")
            return
        except Exception:
            self._pin_below(batch)
            self.crawler.stats.inc_value("store/batch_failures")
            logger.exception("could not store a batch of %d %s records", len(batch), batch.record_type.namespace)
            self._stop_crawl()
            raise
        finally:
            del self.in_flight[id(batch)]
        stats = self.crawler.stats
        stats.inc_value("store/batches")
        stats.inc_value("store/records", len(batch))
        stats.inc_value("store/bytes", sum(obj.bytes for obj in objects))
        stats.inc_value(f"store/records/{batch.record_type.namespace}", len(batch))
        await self._save_ready_cursors()

    def watermark(self) -> int:
        """The highest receipt below which every record is stored."""
        pending = [b.first_receipt for b in self.in_flight.values()]
        if self.lost_receipt is not None:
            pending.append(self.lost_receipt)
        oldest = self.batcher.oldest_receipt()
        if oldest is not None:
            pending.append(oldest)
        return min(pending) - 1 if pending else self.receipt

    async def _save_ready_cursors(self) -> None:
        ready = self.ledger.ready(self.watermark())
        acknowledgements = [item for item in ready if not isinstance(item, Checkpoint)]
        if acknowledgements:
            assert self.distributed is not None, "distributed acknowledgements need the Distributed extension"
            # the same ordered thread as the index and dead letters: what they record is durable first
            await self.services.in_meta_thread(self.distributed.acknowledge, acknowledgements)
        for checkpoint in ready:
            if isinstance(checkpoint, Checkpoint):
                await self.services.in_meta_thread(
                    self.save_cursor, checkpoint.source, checkpoint.key, checkpoint.value
                )

    def save_cursor(self, source: str, key: str, value: str) -> None:
        """Save a cursor to the metadata DB (on the metadata thread)."""
        self.services.meta.save_cursor(source, value, key=key, run_id=self.services.run_id)
        self.crawler.stats.set_value(f"cursor/{source}/{key}", value)
        logger.info("cursor %s/%s saved at %s", source, key, value)

    async def _flush_idle(self) -> None:
        for batch in self.batcher.take_idle():
            await self._flush(batch)
        if self.ledger and not self.batcher and not self.in_flight:
            await self._save_ready_cursors()

    def _stop_crawl(self) -> None:
        """A batch was given up: the crawl stops with finish reason ``store_failed`` (what it would fetch
        next could not be stored either, and no cursor may pass the lost batch)."""
        if self._closing:
            return
        self._closing = True
        logger.error("stopping the crawl: a batch could not be stored within STORE_RETRY_SECONDS")
        self._stopping = asyncio.ensure_future(self.crawler.engine.close_spider_async(reason=STORE_FAILED))

    async def close_spider(self) -> None:
        self._closing = True
        for checkpoint in self.cursors.take_released():
            self.ledger.add(checkpoint, self.receipt)
        if self._idle_loop is not None and self._idle_loop.running:
            self._idle_loop.stop()
        if self._idle_loop_done is not None:
            # an idle flush may be half way: its cursor save must come before the last one, not after
            # the metadata thread has shut down
            await maybe_deferred_to_future(self._idle_loop_done)
        if self._spider_idle_flush is not None:
            await maybe_deferred_to_future(self._spider_idle_flush)
        for batch in self.batcher.take_all():
            await self._flush(batch)
        await self._save_ready_cursors()
