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

import redis
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider, NotConfigured
from scrapy_redis import connection
from twisted.internet import task

from crawler.distributed.coordinator import Coordinator, Keys
from crawler.extensions.services import Services
from crawler.items.control import WorkDone
from crawler.scrapy_compat import wake_engine

logger = logging.getLogger(__name__)
IDLE_CHECK_SECONDS = 0.5


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
        self.ack_failures = 0
        self._last_idle_check = 0.0
        self._loops: list[task.LoopingCall] = []

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Distributed:
        settings = crawler.settings
        if not settings.get("REDIS_URL"):
            # the usual case, not worth a warning: Scrapy logs a NotConfigured only when it has a message
            logger.debug("distributed crawling off: REDIS_URL is not set")
            raise NotConfigured
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
        """Prove this worker alive (re-registering it if it was taken for dead) and reap dead ones."""
        try:
            self.coordinator.heartbeat()
            requeued = self.coordinator.reap_dead_workers()
            snapshot = self.coordinator.snapshot()
        except redis.RedisError as exc:  # a blip must not end the heartbeats: the next beat retries
            logger.warning("distributed heartbeat failed: %s", exc)
            return
        stats = self.crawler.stats
        assert stats is not None
        if requeued:
            stats.inc_value("distributed/requeued", requeued)
        # for the progress line (crawler.extensions.progress)
        stats.set_value("distributed/queued", snapshot["queued"])
        stats.set_value("distributed/workers", snapshot["workers"])

    def poll(self) -> None:
        """Wake the engine when this worker has free slots: the shared queue may have work for it."""
        engine = self.crawler.engine
        if engine.needs_backout():
            return  # not open, closing, or the downloader is full
        if engine.downloader.active and len(engine.downloader.active) >= engine.downloader.total_concurrency // 2:
            return  # its own responses keep asking the scheduler
        wake_engine(engine)

    def spider_idle(self) -> None:
        """Stay open while other workers may still add work or die holding it."""
        if self.pending_acks and not self.store_failed:
            raise DontCloseSpider  # this worker's last records are still being stored
        now = time.monotonic()
        if now - self._last_idle_check < IDLE_CHECK_SECONDS:
            raise DontCloseSpider  # the poll wakes the engine ten times a second: ask Redis less often
        self._last_idle_check = now
        try:
            self._check_idle(now)
        except redis.RedisError as exc:
            logger.warning("distributed idle check failed: %s", exc)
            raise DontCloseSpider from exc

    def _check_idle(self, now: float) -> None:
        self.coordinator.started()  # idle means start() is exhausted
        if not self.pending_acks:
            # nothing of this worker is in flight or waiting to be stored: a lease it still holds belongs
            # to a request replaced by a retry or whose callback raised. Drop them first, or two idle
            # workers holding such leases would each wait for the other.
            orphans = self.coordinator.held()
            if orphans:
                logger.info("dropping %d leases of requests that ended without output", orphans)
                self.coordinator.drop_leases()
        self.beat()
        if self.coordinator.work_elsewhere():
            self.seen_work = True
            raise DontCloseSpider
        stats = self.crawler.stats
        assert stats is not None
        self.seen_work = self.seen_work or bool(stats.get_value("scheduler/dequeued/redis"))
        if not self.seen_work and now - self._opened_at < self.wait_seconds:
            raise DontCloseSpider  # no run to help yet: wait for one to start

    @property
    def store_failed(self) -> bool:
        """A batch or an acknowledgement failed: what this worker still holds must go back to the queue."""
        stats = self.crawler.stats
        return self.ack_failures > 0 or bool(stats and stats.get_value("store/batch_failures"))

    def spider_closed(self, reason: str) -> None:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        # after a clean finish every lease left is an orphan; otherwise (shutdown, a failed batch) the
        # leased requests may not be stored: another worker, or the next run, fetches them again
        requeue = reason != "finished" or bool(self.pending_acks) or self.store_failed
        left = self.coordinator.leave(requeue=requeue)
        if left:
            logger.info("left the distributed run holding %d leases (%s)", left, "re-queued" if requeue else "dropped")

    # -- used by spiders and the store pipeline ------------------------------------------------------

    def expect_ack(self) -> None:
        """A unit's :class:`WorkDone` is on its way to the store: this worker holds work until it is applied."""
        with self._acks_lock:
            self.pending_acks += 1

    def acknowledge(self, items: Sequence[WorkDone]) -> None:
        """Apply the WorkDone items whose records are stored (on the metadata thread): complete their
        units in the shared pages, save any cursor that moved, then drop the leases. If this fails, the
        leases stay held and go back to the queue when the worker leaves."""
        leases = [item.lease for item in items if item.lease is not None]
        try:
            units = [(page, item.unit) for item in items for page in item.pages]
            if units and self.coordinator.units_done(units):
                self._save_released_cursors(self.crawler.spider.source)
            self.coordinator.drop_leases(leases)
        except Exception:
            self.ack_failures += 1
            raise
        finally:
            with self._acks_lock:
                self.pending_acks -= len(items)

    def _save_released_cursors(self, source: str) -> None:
        services = self.crawler.get_extension(Services)
        assert services is not None
        # under the metadata DB's lock (a PostgreSQL advisory lock): the worker that saves last read the
        # released values last, so the saved cursor never moves back
        with services.meta.exclusive(f"cursor:{source}"):
            for key, value in self.coordinator.released_cursors().items():
                services.meta.save_cursor(source, value, key=key, run_id=services.run_id)
                self.crawler.stats.set_value(f"cursor/{source}/{key}", value)
