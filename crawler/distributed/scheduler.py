"""scrapy-redis's scheduler, with every popped request leased to this worker until its work is stored.

Enabled by :class:`crawler.distributed.RedisAddon` when ``REDIS_URL`` is set. Queue and dupefilter are
scrapy-redis's own (``PriorityQueue``, ``RFPDupeFilter``); what changes is :meth:`next_request`: the
pop and the lease are one atomic step (:mod:`crawler.distributed.coordinator`), so a worker killed at
any moment leaves its requests recoverable.
"""

from __future__ import annotations

from scrapy import Request
from scrapy.crawler import Crawler
from scrapy_redis.scheduler import Scheduler

from crawler.distributed.coordinator import Coordinator
from crawler.middlewares import CREDENTIAL_HEADERS_META

LEASE_META = "lease"


class LeasingScheduler(Scheduler):
    coordinator: Coordinator

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> LeasingScheduler:
        from crawler.distributed.extension import Distributed  # the extension owns the coordinator

        scheduler = super().from_crawler(crawler)
        extension = crawler.get_extension(Distributed)
        if extension is None:
            raise RuntimeError("LeasingScheduler needs crawler.distributed.extension.Distributed in EXTENSIONS")
        scheduler.coordinator = extension.coordinator
        return scheduler

    def enqueue_request(self, request: Request) -> bool:
        # Credentials a downloader middleware added (GitHub tokens) are added again when the request is
        # sent: a retry's copy must not store them in Redis.
        for header in request.meta.pop(CREDENTIAL_HEADERS_META, ()):
            request.headers.pop(header, None)
        # A retry (or redirect) of a leased request carries the old lease: once the new request is in
        # the queue, the old lease has nothing left to protect.
        old_lease = request.meta.pop(LEASE_META, None)
        queued = super().enqueue_request(request)
        if old_lease is not None:
            self.coordinator.drop_leases([old_lease])
        return queued

    def next_request(self) -> Request | None:
        popped = self.coordinator.pop()
        if popped is None:
            return None
        lease, data = popped
        request: Request = self.queue._decode_request(data)
        request.meta[LEASE_META] = lease
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return request

    def has_pending_requests(self) -> bool:
        return len(self) > 0

    def close(self, reason: str) -> None:
        # state is shared by the workers: the coordinator clears it when the last worker leaves
        return None
