"""The exit status of ``scrapy crawl`` from a crawl's final stats."""

from __future__ import annotations

import pytest

from crawler.commands.crawl import crawl_outcome

FINE = {"finish_reason": "finished", "item_scraped_count": 10, "store/records": 10, "spidermon/result": "passed"}


@pytest.mark.parametrize(
    ("stats", "fail_on_monitors", "code"),
    [
        (FINE, True, 0),
        ({**FINE, "finish_reason": "shutdown"}, True, 1),
        ({**FINE, "finish_reason": "closespider_errorcount"}, True, 1),
        ({**FINE, "finish_reason": None}, True, 1),
        ({**FINE, "store/batch_failures": 1}, True, 3),
        ({**FINE, "finish_reason": "store_failed", "store/batch_failures": 1}, True, 3),
        ({**FINE, "finish_reason": "shutdown", "store/records": 9}, True, 1),
        ({**FINE, "store/records": 9}, True, 3),
        ({**FINE, "spidermon/result": "failed", "spidermon/monitors/failed": 2}, True, 4),
        ({**FINE, "spidermon/result": "failed"}, False, 0),
        ({**FINE, "store/records": 9, "spidermon/result": "failed"}, False, 3),
        ({"finish_reason": "finished"}, True, 0),  # nothing scraped, nothing to store, no monitors
    ],
)
def test_crawl_outcome(stats, fail_on_monitors, code):
    assert crawl_outcome(stats, fail_on_monitors)[0] == code
