"""scrapy-redis's scheduler, with every popped request leased to this worker until its work is stored.

Enabled by :class:`crawler.distributed.RedisAddon` when ``REDIS_URL`` is set. Queue and dupefilter are
scrapy-redis's own (``PriorityQueue``, ``RFPDupeFilter``); what changes is :meth:`next_request`: the
pop and the lease are one atomic step (:mod:`crawler.distributed.coordinator`), so a worker killed at
any moment leaves its requests recoverable.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler

from crawler.distributed.coordinator import LEASE_META, Coordinator
from crawler.extensions.cursors import PAGES_META, UNIT_META
from crawler.middlewares import CREDENTIAL_HEADERS_META
from crawler.scheduler import HoldsDelayedRequests

#: requests leased per round trip to Redis (they are this worker's from then on)
POP_BATCH = 8
#: how stale the queue length may be for ``len(scheduler)`` (start-request pacing), and how long an empty
#: queue is not asked again unless this worker pushed to it (other workers' pushes: the poll, 0.1 s)
LENGTH_TTL = 0.05


class LeasedPriorityQueue(PriorityQueue):
    """scrapy-redis's priority queue with a cheaper encoding: Scrapy's ``Request.to_dict(spider=…)``
    finds a callback's name by listing every member of the spider (``inspect.getmembers``) for each
    request; a bound method of the spider is named by its own name here."""

    def _encode_request(self, request: Request) -> bytes:
        callback, errback = _method_name(self.spider, request.callback), _method_name(self.spider, request.errback)
        if callback is _UNKNOWN or errback is _UNKNOWN:
            return super()._encode_request(request)
        encoded = {"url": request.url, "callback": callback, "errback": errback, "headers": dict(request.headers)}
        for attribute in request.attributes:
            encoded.setdefault(attribute, getattr(request, attribute))
        if type(request) is not Request:
            encoded["_class"] = f"{type(request).__module__}.{type(request).__name__}"
        return self.serializer.dumps(encoded)


_UNKNOWN = object()


def _method_name(spider: Spider, function: Any) -> Any:
    if function is None or isinstance(function, str):
        return function
    name = getattr(function, "__name__", None)
    if getattr(function, "__self__", None) is spider and name and getattr(spider, name, None) == function:
        return name
    return _UNKNOWN


class _LeasingScheduler(Scheduler):
    coordinator: Coordinator

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._leased: deque[Request] = deque()  # popped and leased, not yet handed to the engine
        self._length = (0, -1.0)  # queue length and when it was read
        self._empty_until = 0.0  # the queue was found empty: until then, do not ask again

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> _LeasingScheduler:
        from crawler.distributed.extension import Distributed  # the extension owns the coordinator

        scheduler = super().from_crawler(crawler)
        scheduler.crawler = crawler
        extension = crawler.get_extension(Distributed)
        if extension is None:
            raise RuntimeError("LeasingScheduler needs crawler.distributed.extension.Distributed in EXTENSIONS")
        scheduler.coordinator = extension.coordinator
        return scheduler

    def enqueue_request(self, request: Request) -> bool:
        # Credentials a downloader middleware added (API tokens) are added again when the request is
        # sent: a retry's copy must not store them in Redis.
        for header in request.meta.pop(CREDENTIAL_HEADERS_META, ()):
            request.headers.pop(header, None)
        # A retry (or redirect) of a leased request carries the old lease: once the new request is in
        # the queue, the old lease has nothing left to protect.
        old_lease = request.meta.pop(LEASE_META, None)
        fingerprint = None if request.dont_filter else self.df.request_fingerprint(request)
        unit = request.meta.get(UNIT_META)
        units = [(page, unit) for page in request.meta.get(PAGES_META, ())] if unit is not None else []
        # the dupefilter check, the unit's place in its cursor pages and the push are one round trip
        queued = self.coordinator.push(self.queue._encode_request(request), request.priority, fingerprint, units)
        self._empty_until = 0.0
        if not queued:
            self.df.log(request, self.spider)
        elif self.stats:
            self.stats.inc_value("scheduler/enqueued/redis")
        if old_lease is not None:
            self.coordinator.drop_leases([old_lease])
        return queued

    def next_request(self) -> Request | None:
        if not self._leased:
            if time.monotonic() < self._empty_until:
                return None  # found empty a moment ago and nothing pushed since: spare Redis the ask
            popped = self.coordinator.pop_many(POP_BATCH)
            if len(popped) < POP_BATCH:  # the queue is drained now
                self._empty_until = time.monotonic() + LENGTH_TTL
            if self.stats:
                self.stats.inc_value("distributed/pops" if popped else "distributed/empty_pops")
            for lease, data in popped:
                request: Request = self.queue._decode_request(data)
                request.meta[LEASE_META] = lease
                self._leased.append(request)
        if not self._leased:
            return None
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis")
        return self._leased.popleft()

    def __len__(self) -> int:
        length, read_at = self._length
        now = time.monotonic()
        if now - read_at > LENGTH_TTL:
            length = len(self.queue)
            self._length = (length, now)
        return length + len(self._leased)

    def has_pending_requests(self) -> bool:
        return bool(self._leased) or len(self.queue) > 0

    def close(self, reason: str) -> None:
        # state is shared by the workers: the coordinator clears it when the last worker leaves
        return None


class LeasingScheduler(HoldsDelayedRequests, _LeasingScheduler):
    """The shared queue's scheduler; a retry due later waits in this worker (its old lease held meanwhile,
    so that it is queued again if the worker dies) and joins the shared queue when due."""
