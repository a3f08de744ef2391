"""Monitoring of every crawl with Spidermon: checks when a run closes, and alerts when one fails.

Enabled in the settings with Spidermon's extension and
``SPIDERMON_SPIDER_CLOSE_MONITORS = ["crawler.monitors.SpiderCloseSuite"]``; the checks and their
thresholds are in :mod:`crawler.monitors.monitors`, the alerts (log, webhook, email) in
:mod:`crawler.monitors.actions`. The README's "Monitoring" section lists the settings.
"""

import warnings

from crawler.monitors.monitors import (
    CursorLagMonitor,
    DeadLettersMonitor,
    ErrorRateMonitor,
    MinItemsMonitor,
    SpiderCloseSuite,
    error_rate,
)

__all__ = [
    "CursorLagMonitor",
    "DeadLettersMonitor",
    "ErrorRateMonitor",
    "MinItemsMonitor",
    "SpiderCloseSuite",
    "error_rate",
]

# Spidermon 1.27's runner logs through Spider.log(), which Scrapy 2.19 deprecates: one warning per
# crawl that says nothing about the crawl. Silenced for that module only.
warnings.filterwarnings("ignore", message=r"Spider\.log\(\) is deprecated", module=r"spidermon\.")
