"""The worker side of a distributed crawl: membership, heartbeats, recovery, and staying fed.

Enabled when ``REDIS_URL`` is set (:class:`crawler.distributed.RedisAddon` also swaps in the shared
scheduler); otherwise :class:`~scrapy.exceptions.NotConfigured`. Settings:

* ``DISTRIBUTED_KEY_PREFIX`` (``crawler``): Redis keys are ``{prefix}:{spider}:…``.
* ``DISTRIBUTED_HEARTBEAT_SECONDS`` (5): how often a worker proves it is alive and looks for dead ones.
* ``DISTRIBUTED_WORKER_TIMEOUT`` (30): a worker silent this long is dead; its leased requests go back
  to the queue.
* ``DISTRIBUTED_WAIT_SECONDS`` (60): how long a worker that has found no work yet waits for some (a
  ``mode=worker`` process started before the run it is meant to help).
* ``DISTRIBUTED_POLL_SECONDS`` (0.1): how often a worker with free download slots looks at the shared
  queue. Scrapy only asks its scheduler again when its own downloads finish, or every 5 s; a worker
  that ran dry would otherwise sit idle while other workers fill the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy_redis import connection
from twisted.internet import task

from crawler.distributed.coordinator import Coordinator, Keys
from crawler.extensions.services import Services
from crawler.items.control import LeaseDone, UnitDone

logger = logging.getLogger(__name__)


class Distributed:
    def __init__(self, crawler: Crawler, coordinator: Coordinator) -> None:
        self.crawler = crawler
        self.coordinator = coordinator
        settings = crawler.settings
        self.heartbeat_seconds = settings.getfloat("DISTRIBUTED_HEARTBEAT_SECONDS", 5.0)
        self.poll_seconds = settings.getfloat("DISTRIBUTED_POLL_SECONDS", 0.1)
        self.wait_seconds = settings.getfloat("DISTRIBUTED_WAIT_SECONDS", 60.0)
        self._opened_at = time.monotonic()
        #: set once this worker has taken work or seen another worker with some
        self.seen_work = False
        #: True for the worker that started this distributed run (it reads the feed's first page)
        self.founder = False
        self.run_id: str | None = None
        #: lease acknowledgements yielded but not yet applied (their records are not stored yet)
        self.pending_acks = 0
        self._acks_lock = threading.Lock()  # acknowledged on the metadata thread
        self._loops: list[task.LoopingCall] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Distributed:
        settings = crawler.settings
        if not settings.get("REDIS_URL"):
            raise NotConfigured("REDIS_URL is not set: one worker, local scheduler")
        assert crawler.spider is not None
        keys = Keys.for_spider(settings.get("DISTRIBUTED_KEY_PREFIX", "crawler"), crawler.spider.name)
        coordinator = Coordinator(
            connection.from_settings(settings),
            keys,
            worker_timeout=settings.getfloat("DISTRIBUTED_WORKER_TIMEOUT", 30.0),
        )
        extension = cls(crawler, coordinator)
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_idle, signal=signals.spider_idle)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self) -> None:
        services = self.crawler.get_extension(Services)
        run_id = services.run_id if services is not None else self.coordinator.worker
        self.founder, self.run_id = self.coordinator.join(run_id)
        stats = self.crawler.stats
        assert stats is not None
        stats.set_value("distributed/worker", self.coordinator.worker)
        stats.set_value("distributed/run", self.run_id)
        stats.set_value("distributed/founder", self.founder)
        logger.info(
            "distributed worker %s %s run %s",
            self.coordinator.worker,
            "started" if self.founder else "joined",
            self.run_id,
        )
        self._opened_at = time.monotonic()
        self._start_loop(self.beat, self.heartbeat_seconds)
        self._start_loop(self.poll, self.poll_seconds)

    def _start_loop(self, function: Any, interval: float) -> None:
        loop = task.LoopingCall(function)
        loop.start(interval, now=False).addErrback(
            lambda failure: logger.error("distributed %s loop failed", function.__name__, exc_info=failure.value)
        )
        self._loops.append(loop)

    def beat(self) -> None:
        self.coordinator.heartbeat()
        requeued = self.coordinator.reap_dead_workers()
        if requeued:
            self.crawler.stats.inc_value("distributed/requeued", requeued)

    def poll(self) -> None:
        """Wake the engine when the shared queue has work and this worker has free slots."""
        engine = self.crawler.engine
        slot = getattr(engine, "_slot", None)
        if engine is None or slot is None or engine.needs_backout():
            return
        if engine.downloader.active and len(engine.downloader.active) >= engine.downloader.total_concurrency // 2:
            return  # its own responses keep asking the scheduler
        slot.nextcall.schedule()

    def spider_idle(self) -> None:
        """Stay open while other workers may still add work or die holding it."""
        self.coordinator.started()  # idle means start() is exhausted
        if self.pending_acks:
            raise DontCloseSpider  # this worker's last records are still being stored
        self.beat()
        if self.coordinator.work_elsewhere():
            self.seen_work = True
            raise DontCloseSpider
        stats = self.crawler.stats
        assert stats is not None
        self.seen_work = self.seen_work or bool(stats.get_value("scheduler/dequeued/redis"))
        if not self.seen_work and time.monotonic() - self._opened_at < self.wait_seconds:
            raise DontCloseSpider  # no run to help yet: wait for one to start
        orphans = self.coordinator.held()
        if orphans:
            # every request this worker ran has finished and been acknowledged: what is still leased
            # was replaced (a retry) or ended in an exception; its work is no longer pending
            logger.info("dropping %d leases of requests that ended without output", orphans)
            self.coordinator.server.delete(self.coordinator.keys.leases(self.coordinator.worker))

    def spider_closed(self) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        left = self.coordinator.leave()
        if left:
            logger.info("left the distributed run holding %d leases", left)

    # -- used by spiders and the store pipeline ------------------------------------------------------

    def lease_done(self, meta: dict[str, Any]) -> list[LeaseDone]:
        """The acknowledgement to yield after the output of the request with this meta, if it was leased."""
        lease = meta.get("lease")
        if lease is None:
            return []
        with self._acks_lock:
            self.pending_acks += 1
        return [LeaseDone(lease)]

    def acknowledge(self, items: Sequence[UnitDone | LeaseDone]) -> None:
        """Apply acknowledgements whose records are stored (on the metadata thread): mark page units
        done, save any cursor that moved, then drop the leases."""
        units = [(item.page, item.unit) for item in items if isinstance(item, UnitDone)]
        if units and self.coordinator.units_done(units):
            services = self.crawler.get_extension(Services)
            assert services is not None
            source = next(item.source for item in items if isinstance(item, UnitDone))
            saved = self.coordinator.save_released_cursors(
                lambda key, value: services.meta.save_cursor(source, value, key=key, run_id=services.run_id)
            )
            for key, value in saved.items():
                self.crawler.stats.set_value(f"cursor/{source}/{key}", value)
        leases = [item.lease for item in items if isinstance(item, LeaseDone)]
        self.coordinator.drop_leases(leases)
        with self._acks_lock:
            self.pending_acks -= len(leases)
