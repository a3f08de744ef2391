"""The scheduler holds a request that must wait (a retry's back-off, a ``Retry-After``) until it is due.

A retry used to wait inside the downloader (an ``asyncio.sleep`` in a middleware): it held a download
slot for the whole wait, and a graceful stop waited for it — a hostile ``Retry-After`` could pin a crawl
for its full cap. Now the retry middleware returns the retry at once, stamped with
``meta[NOT_BEFORE_META]`` (a ``time.monotonic()`` value); the scheduler keeps it aside until then, the
slot serves other requests meanwhile, and a stop drops what still waits (its work unit is not complete,
so no cursor passes it; the next run fetches it again).

:class:`HoldsDelayedRequests` is a mixin for any scheduler (the local one, and the distributed
:class:`crawler.distributed.scheduler.LeasingScheduler`, whose lease then outlives the wait).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from typing import Any

from scrapy import Request
from scrapy.core.scheduler import Scheduler as ScrapyScheduler

from crawler.scrapy_compat import wake_engine

__all__ = ["NOT_BEFORE_META", "HoldsDelayedRequests", "Scheduler"]

#: request meta: the ``time.monotonic()`` before which the request is not sent
NOT_BEFORE_META = "not_before"


class HoldsDelayedRequests:
    """Put before a scheduler class in the bases: requests due later wait in a heap, not in the queue."""

    crawler: Any
    stats: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._delayed: list[tuple[float, int, Request]] = []  # (due, arrival, request): a heap
        self._arrival = itertools.count()

    def enqueue_request(self, request: Request) -> bool:
        due = request.meta.get(NOT_BEFORE_META)
        wait = due - time.monotonic() if isinstance(due, int | float) else 0.0
        if wait <= 0:
            return super().enqueue_request(request)  # type: ignore[misc]
        heapq.heappush(self._delayed, (due, next(self._arrival), request))
        if self.stats is not None:
            self.stats.inc_value("scheduler/delayed")
        self._wake_in(wait)
        return True

    def _wake_in(self, seconds: float) -> None:
        """Have the engine look at the scheduler when the request is due (not at its next heartbeat)."""
        # no engine or no running loop: a test driving the scheduler directly
        with contextlib.suppress(AttributeError, RuntimeError):
            asyncio.get_running_loop().call_later(seconds, wake_engine, self.crawler.engine)

    def _release_due(self) -> None:
        heap, now = self._delayed, time.monotonic()
        while heap and heap[0][0] <= now:
            _, _, request = heapq.heappop(heap)
            request.meta.pop(NOT_BEFORE_META, None)
            super().enqueue_request(request)  # type: ignore[misc]

    def next_request(self) -> Request | None:
        self._release_due()
        return super().next_request()  # type: ignore[misc]

    def has_pending_requests(self) -> bool:
        return bool(self._delayed) or super().has_pending_requests()  # type: ignore[misc]

    def __len__(self) -> int:
        return len(self._delayed) + super().__len__()  # type: ignore[misc]

    @property
    def delayed_count(self) -> int:
        """Requests waiting until they are due."""
        return len(self._delayed)


class Scheduler(HoldsDelayedRequests, ScrapyScheduler):
    """Scrapy's scheduler, holding requests until they are due (:data:`NOT_BEFORE_META`)."""

    @classmethod
    def from_crawler(cls, crawler: Any) -> Scheduler:
        scheduler = super().from_crawler(crawler)
        scheduler.crawler = crawler
        return scheduler
