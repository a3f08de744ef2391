"""Scrapy's core stats, without the control items.

The store pipeline consumes control items (:mod:`crawler.items.control`) by dropping them, the only way a
pipeline can end an item; they are not scraped items, so they must not count as dropped ones either
(``item_dropped_count`` would otherwise hold one per request)."""

from __future__ import annotations

from typing import Any

from scrapy.extensions.corestats import CoreStats as ScrapyCoreStats

from crawler.items.control import Checkpoint, WorkDone


class CoreStats(ScrapyCoreStats):
    def item_dropped(self, item: Any, spider: Any, exception: BaseException) -> None:
        if not isinstance(item, Checkpoint | WorkDone):
            super().item_dropped(item, spider, exception)
