"""Control items are consumed by the store pipeline, not counted as dropped items; records still are."""

from __future__ import annotations

from scrapy import Spider, signals
from scrapy.exceptions import DropItem
from scrapy.utils.test import get_crawler

from crawler.extensions.stats import CoreStats
from crawler.items.control import Checkpoint, WorkDone


def test_control_items_are_not_counted_as_dropped():
    crawler = get_crawler(Spider, {"EXTENSIONS": {"scrapy.extensions.corestats.CoreStats": None}})
    extension = CoreStats.from_crawler(crawler)  # signals hold weak references: keep it
    spider = Spider("s")
    for item in (WorkDone("u1"), Checkpoint("s", "42"), {"name": "a record"}):
        crawler.signals.send_catch_log(
            signals.item_dropped, item=item, response=None, spider=spider, exception=DropItem("x")
        )
    assert crawler.stats.get_value("item_dropped_count") == 1
    assert crawler.stats.get_value("item_dropped_reasons_count/DropItem") == 1
    assert extension.stats is crawler.stats
