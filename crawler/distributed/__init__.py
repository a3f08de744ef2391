"""Distributed crawling on Redis: N workers of a spider, on any hosts, share one crawl.

Set ``REDIS_URL`` (and ``META_DB_URL=postgresql://…`` so runs, cursors, dead letters and partitions
are shared too) and start ``scrapy crawl <spider> …`` on each worker. :class:`RedisAddon` then swaps
in scrapy-redis's shared queue and dupefilter, with every request leased to the worker that runs it
(:mod:`.scheduler`), and :mod:`.extension` keeps each worker fed, alive and recoverable. Without
``REDIS_URL`` nothing here is active.
"""

from __future__ import annotations

from scrapy.settings import SETTINGS_PRIORITIES, BaseSettings

__all__ = ["RedisAddon"]


class RedisAddon:
    """Turns a crawl distributed when ``REDIS_URL`` is set (listed in ``ADDONS``)."""

    def update_settings(self, settings: BaseSettings) -> None:
        if not settings.get("REDIS_URL"):
            return
        prefix = settings.get("DISTRIBUTED_KEY_PREFIX", "crawler")
        # replaces the project's local scheduler (crawler.scheduler.Scheduler, set at project priority)
        priority = max(settings.getpriority("SCHEDULER") or 0, SETTINGS_PRIORITIES["addon"])
        settings.set("SCHEDULER", "crawler.distributed.scheduler.LeasingScheduler", priority=priority)
        settings.set("SCHEDULER_QUEUE_CLASS", "crawler.distributed.scheduler.LeasedPriorityQueue", priority="addon")
        settings.set("SCHEDULER_QUEUE_KEY", f"{prefix}:%(spider)s:requests", priority="addon")
        settings.set("DUPEFILTER_CLASS", "scrapy_redis.dupefilter.RFPDupeFilter", priority="addon")
        settings.set("SCHEDULER_DUPEFILTER_KEY", f"{prefix}:%(spider)s:dupefilter", priority="addon")
        # the state is shared: the last worker out clears it (crawler.distributed.coordinator)
        settings.set("SCHEDULER_PERSIST", True, priority="addon")
