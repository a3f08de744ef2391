"""A progress line every ``PROGRESS_INTERVAL`` seconds (default: 5 on a terminal, 30 into a log file or
a pipe; 0 turns it off)::

    progress: 12000 items (95.3/s), 12480 responses, 3 dead letters, backlog 80250, ETA 0:14:02 [====      ] 13%

Items are ``item_scraped_count`` (records, tombstones included), responses ``response_received_count``.
The rate is the items per second over the last ``PROGRESS_RATE_WINDOW`` seconds (default 60): recent
enough to follow a slowdown, long enough not to jump with every batch. The backlog is the stat
``<source>/backlog`` that a cursor-following spider keeps (a feed: changes after the page read plus
requests in flight; an index listing: entries left); with it come ETA = backlog / rate and a bar of
items / (items + backlog). A worker of a distributed
crawl adds the shared queue and the live workers (``distributed/queued``, ``distributed/workers``, read at
each heartbeat). A last line is logged when the spider closes.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from scrapy import Spider, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.statscollectors import StatsCollector
from scrapy.utils.asyncio import create_looping_call

from crawler.config import get_float

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 30.0
#: on a terminal someone is watching: a line every few seconds
TERMINAL_INTERVAL = 5.0
DEFAULT_RATE_WINDOW = 60.0
BAR_WIDTH = 20


def default_interval(log_file: str | None) -> float:
    """5 s when the log goes to a terminal, else 30 s (a log file, a pipe, a service's journal)."""
    return TERMINAL_INTERVAL if not log_file and sys.stderr.isatty() else DEFAULT_INTERVAL


def bar(done: int, left: int) -> str:
    """``[=====     ] 50%`` of done / (done + left)."""
    total = done + left
    share = done / total if total > 0 else 1.0
    filled = round(share * BAR_WIDTH)
    return f"[{'=' * filled}{' ' * (BAR_WIDTH - filled)}] {share:.0%}"


def format_eta(seconds: float) -> str:
    """``h:mm:ss`` with hours past 24 kept as hours (a day-long backlog reads 26:40:00, not "1 day, …")."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    def __init__(
        self,
        stats: StatsCollector,
        interval: float = DEFAULT_INTERVAL,
        *,
        rate_window: float = DEFAULT_RATE_WINDOW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = stats
        self.interval = interval
        # at least two intervals, so a rate always spans one full interval
        self.rate_window = max(rate_window, 2 * interval)
        self.clock = clock
        self.source: str | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._task: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Progress:
        interval = get_float(
            crawler.settings, "PROGRESS_INTERVAL", default_interval(crawler.settings.get("LOG_FILE")), minimum=0
        )
        if interval <= 0:
            raise NotConfigured  # turned off on purpose: nothing to warn about
        assert crawler.stats is not None
        progress = cls(
            crawler.stats,
            interval,
            rate_window=crawler.settings.getfloat("PROGRESS_RATE_WINDOW", DEFAULT_RATE_WINDOW),
        )
        crawler.signals.connect(progress.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(progress.spider_closed, signal=signals.spider_closed)
        return progress

    def spider_opened(self, spider: Spider) -> None:
        self.start(str(getattr(spider, "source", None) or spider.name))
        # Scrapy's own helper (as LogStats uses): an asyncio task under the asyncio reactor, else a LoopingCall
        self._task = create_looping_call(self.log)
        self._task.start(self.interval, now=False)

    def spider_closed(self, spider: Spider, reason: str) -> None:
        if self._task is not None and self._task.running:
            self._task.stop()
        self.log()

    def start(self, source: str) -> None:
        """Begin measuring for ``source`` (the first rate is measured from here)."""
        self.source = source
        self._samples.clear()
        self._samples.append((self.clock(), self._items()))

    def log(self) -> None:
        logger.info(self.line())

    def line(self) -> str:
        """Take a sample and render the progress line."""
        now, items = self.clock(), self._items()
        self._samples.append((now, items))
        # keep the newest sample older than the window as the base, so the rate spans the whole window
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.rate_window:
            self._samples.popleft()
        then, before = self._samples[0]
        rate = (items - before) / (now - then) if now > then else 0.0
        get = self.stats.get_value
        parts = [
            f"progress: {items} items ({rate:.1f}/s)",
            f"{get('response_received_count', 0)} responses",
            f"{get('dead_letters', 0)} dead letters",
        ]
        backlog = get(f"{self.source}/backlog") if self.source else None
        if backlog is not None:
            eta = format_eta(max(int(backlog), 0) / rate) if rate > 0 else "unknown"
            parts.append(f"backlog {backlog}, ETA {eta} {bar(items, max(int(backlog), 0))}")
        shared = get("distributed/queued")
        if shared is not None:  # a distributed crawl (crawler.distributed): work waiting for any worker
            parts.append(f"shared queue {shared} on {get('distributed/workers', '?')} workers")
        return ", ".join(parts)

    def _items(self) -> int:
        return int(self.stats.get_value("item_scraped_count", 0) or 0)
