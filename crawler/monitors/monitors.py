"""The checks Spidermon runs when a crawl closes, and the suite that groups them with its alert actions.

Every threshold is a setting with a default here (the values also listed in the README), so a deployment
without the settings lines still monitors sensibly. A spider may override a threshold for itself with an
attribute named like the setting in lower case (``monitor_min_items = 0``, e.g. set in ``__init__`` for a
mode that can legitimately find nothing); ``-s NAME=value`` on the command line beats both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from scrapy.settings import SETTINGS_PRIORITIES
from spidermon import MonitorSuite, monitors
from spidermon.contrib.scrapy.monitors import FinishReasonMonitor
from spidermon.contrib.scrapy.monitors.base import BaseScrapyMonitor

from crawler.monitors.actions import EmailAlert, LogSummary, WebhookAlert

T = TypeVar("T")

#: the defaults of the thresholds (also the README's)
DEFAULT_MIN_ITEMS = 1
DEFAULT_MAX_ERROR_RATE = 0.05
DEFAULT_MAX_DEAD_LETTERS = 100
DEFAULT_MAX_DEAD_LETTER_RATIO = 0.0
DEFAULT_MAX_CURSOR_LAG = 10_000


def source_of(spider: Any) -> str:
    """The source name stats are keyed by (``<source>/backlog``); a plain Scrapy spider's name."""
    return str(getattr(spider, "source", None) or getattr(spider, "name", "unknown"))


def error_rate(stats: dict[str, Any]) -> tuple[float, int, int, int]:
    """The run's error rate and its parts: ``(rate, errors, dead_letters, items)``.

    rate = (``log_count/ERROR`` + ``dead_letters``) / max(``item_scraped_count`` + ``dead_letters``, 1)

    The denominator counts *outcomes*: every unit of input ends as a scraped record (tombstones
    included) or as a dead letter, so the rate is "the share of the work that went wrong". Requests
    are not used: retries, feed pages and stale re-fetches would dilute it.
    """
    errors = int(stats.get("log_count/ERROR", 0) or 0)
    dead = int(stats.get("dead_letters", 0) or 0)
    items = int(stats.get("item_scraped_count", 0) or 0)
    return (errors + dead) / max(items + dead, 1), errors, dead, items


class PlatformMonitor(BaseScrapyMonitor):
    """Base of this platform's monitors: thresholds from settings with a per-spider override."""

    def threshold(self, setting: str, convert: Callable[[Any], T], default: T) -> T:
        """The threshold ``setting``: ``-s`` on the command line, else the spider's attribute, else settings."""
        settings = self.crawler.settings
        priority = settings.getpriority(setting)
        if priority is not None and priority >= SETTINGS_PRIORITIES["cmdline"]:
            return convert(settings[setting])
        override = getattr(self.data.spider, setting.lower(), None)
        if override is not None:
            return convert(override)
        value = settings.get(setting)
        return default if value is None or value == "" else convert(value)


@monitors.name("Item count")
class MinItemsMonitor(PlatformMonitor):
    """The run scraped at least MONITOR_MIN_ITEMS records."""

    @monitors.name("Should scrape at least MONITOR_MIN_ITEMS records")
    def test_min_items(self) -> None:
        minimum = self.threshold("MONITOR_MIN_ITEMS", int, DEFAULT_MIN_ITEMS)
        items = int(self.stats.get("item_scraped_count", 0) or 0)
        self.assertGreaterEqual(items, minimum, msg=f"{items} records scraped, expected at least {minimum}")


@monitors.name("Error rate")
class ErrorRateMonitor(PlatformMonitor):
    """Errors and dead letters stay under MONITOR_MAX_ERROR_RATE of the run's outcomes."""

    @monitors.name("Should keep errors + dead letters under MONITOR_MAX_ERROR_RATE")
    def test_error_rate(self) -> None:
        maximum = self.threshold("MONITOR_MAX_ERROR_RATE", float, DEFAULT_MAX_ERROR_RATE)
        rate, errors, dead, items = error_rate(self.stats)
        self.assertLessEqual(
            rate,
            maximum,
            msg=f"error rate {rate:.1%} > {maximum:.1%}: ({errors} errors + {dead} dead letters)"
            f" / ({items} records + {dead} dead letters)",
        )


@monitors.name("Dead letters")
class DeadLettersMonitor(PlatformMonitor):
    """This run's dead letters stay under MONITOR_MAX_DEAD_LETTERS, or MONITOR_MAX_DEAD_LETTER_RATIO of its records."""

    @monitors.name("Should add no more dead letters than allowed")
    def test_dead_letters(self) -> None:
        absolute = self.threshold("MONITOR_MAX_DEAD_LETTERS", int, DEFAULT_MAX_DEAD_LETTERS)
        ratio = self.threshold("MONITOR_MAX_DEAD_LETTER_RATIO", float, DEFAULT_MAX_DEAD_LETTER_RATIO)
        items = int(self.stats.get("item_scraped_count", 0) or 0)
        dead = int(self.stats.get("dead_letters", 0) or 0)
        # either bound allows it: a fixed allowance for small runs, a proportional one for big ones
        allowed = max(absolute, int(ratio * items))
        reasons = sorted(
            ((key.split("/", 1)[1], value) for key, value in self.stats.items() if key.startswith("dead_letters/")),
            key=lambda kv: -int(kv[1]),
        )
        detail = ", ".join(f"{reason} {count}" for reason, count in reasons[:5])
        self.assertLessEqual(dead, allowed, msg=f"{dead} dead letters > {allowed} allowed ({detail})")


@monitors.name("Cursor lag")
class CursorLagMonitor(PlatformMonitor):
    """The backlog a cursor-following source reports (``<source>/backlog``) is under MONITOR_MAX_CURSOR_LAG."""

    @monitors.name("Should end with the cursor close to the head of the source")
    def test_cursor_lag(self) -> None:
        stat = f"{source_of(self.data.spider)}/backlog"
        if stat not in self.stats:
            # named fetches, or a source that reports no backlog: there is no cursor to lag
            self.skipTest(f"{stat} not reported: no cursor followed in this run")
        lag = int(self.stats[stat] or 0)
        maximum = self.threshold("MONITOR_MAX_CURSOR_LAG", int, DEFAULT_MAX_CURSOR_LAG)
        self.assertLessEqual(lag, maximum, msg=f"{stat} = {lag} > {maximum}: the source is ahead of the cursor")


@monitors.name("Storage")
class StorageMonitor(PlatformMonitor):
    """Every record the crawl scraped is stored: no batch was given up (``store/batch_failures``), and the
    stored records (``store/records``) are the scraped ones (``item_scraped_count``)."""

    @monitors.name("Should store every scraped record")
    def test_everything_scraped_is_stored(self) -> None:
        failures = int(self.stats.get("store/batch_failures", 0) or 0)
        self.assertEqual(failures, 0, msg=f"{failures} batches could not be stored: their records are not in storage")
        scraped = int(self.stats.get("item_scraped_count", 0) or 0)
        stored = int(self.stats.get("store/records", 0) or 0)
        self.assertEqual(stored, scraped, msg=f"{stored} records stored of {scraped} scraped")


class SpiderCloseSuite(MonitorSuite):
    """The checks of a finished run; alerts go out only when one of them fails (see ``actions``)."""

    monitors: ClassVar[list[Any]] = [
        FinishReasonMonitor,  # Spidermon's own: SPIDERMON_EXPECTED_FINISH_REASONS, default ["finished"]
        MinItemsMonitor,
        ErrorRateMonitor,
        DeadLettersMonitor,
        CursorLagMonitor,
        StorageMonitor,
    ]
    monitors_finished_actions: ClassVar[list[Any]] = [LogSummary]
    # the same notifiers on success; they skip themselves unless MONITOR_NOTIFY_ON_SUCCESS is true
    monitors_passed_actions: ClassVar[list[Any]] = [WebhookAlert, EmailAlert]
    monitors_failed_actions: ClassVar[list[Any]] = [WebhookAlert, EmailAlert]
