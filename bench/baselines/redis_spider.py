"""Stock scrapy-redis: the "idle pull" baseline of ``bench.distributed``.

A ``RedisSpider`` reads packument URLs from the Redis list ``<prefix>:start_urls`` in batches of
``REDIS_START_URLS_BATCH_SIZE`` (default: ``CONCURRENT_REQUESTS``), and only when the spider goes idle —
scrapy-redis's documented way to feed workers. Run with scrapy-redis's own settings and nothing from
``crawler``::

    scrapy runspider bench/baselines/redis_spider.py -s REDIS_URL=redis://127.0.0.1:6379/0 \
        -s SCHEDULER=scrapy_redis.scheduler.Scheduler -s DUPEFILTER_CLASS=scrapy_redis.dupefilter.RFPDupeFilter \
        -a redis_key=<prefix>:start_urls -o out.jsonl:jsonlines
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from scrapy.http import Response
from scrapy_redis.spiders import RedisSpider

from bench.baselines.stock_spider import StockNpmSpider


class StockRedisNpmSpider(RedisSpider):
    name = "stock_redis_npm"

    #: ``-a timing_file=…``: when the first and last items came, written at close. A RedisSpider closes
    #: only after MAX_IDLE_TIME_BEFORE_CLOSE of idleness, checked on Scrapy's 5 s heartbeat: the benchmark
    #: counts its time up to the last item, not that tail.
    timing_file: str | None = None
    first_item_at: float | None = None
    last_item_at: float | None = None

    def parse(self, response: Response) -> Iterator[dict[str, Any]]:
        # the same record as the stock Scrapy baseline
        for item in StockNpmSpider.parse(self, response):  # type: ignore[arg-type]
            self.last_item_at = time.time()
            self.first_item_at = self.first_item_at or self.last_item_at
            yield item

    def closed(self, reason: str) -> None:
        if self.timing_file:
            Path(self.timing_file).write_text(json.dumps({"first": self.first_item_at, "last": self.last_item_at}))

    def make_request_from_data(self, data: bytes) -> Any:
        request = super().make_request_from_data(data)
        return request.replace(headers={"Accept": "application/json"})
