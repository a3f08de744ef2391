"""``scrapy crawl``: Scrapy's own command, which first checks the platform's settings and the spider's
arguments, and whose exit status tells how the crawl went.

A setting of the wrong type (``-s BATCH_MAX_RECORDS=abc``, or the environment), an unknown spider argument
(``-a pakages=…``) or a bad argument value (``-a mode=fulll``) stops the command before anything starts,
with one line naming the setting or argument and what it expects, and exit status 2. Settings a spider
sets itself are checked when the crawl starts (:class:`crawler.extensions.services.Services`), also
before any request or record.

Exit status (:data:`EXIT_CODES`): 0 the crawl finished and stored everything it scraped and its monitors
passed; 1 it could not start or did not finish (its finish reason is not ``finished``: a shutdown, a
close-spider limit, an error); 2 a usage error (nothing started); 3 records were scraped but not stored
(a batch given up after ``STORE_RETRY_SECONDS``, which stops the crawl with finish reason
``store_failed``: the next run fetches them again); 4 the monitors failed
(``EXIT_ON_MONITOR_FAILURE=false`` makes that 0).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.exceptions import UsageError
from scrapy.spiderloader import get_spider_loader

from crawler.config import IngestionConfig, get_bool

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_NOT_FINISHED, EXIT_USAGE, EXIT_NOT_STORED, EXIT_MONITORS_FAILED = 0, 1, 2, 3, 4
EXIT_CODES = {
    EXIT_OK: "the crawl finished, stored what it scraped, and its monitors passed",
    EXIT_NOT_FINISHED: "the crawl could not start or did not finish (its finish reason says why)",
    EXIT_USAGE: "a bad argument or setting: nothing started",
    EXIT_NOT_STORED: "records were scraped but not stored (a batch was given up); the next run fetches them again",
    EXIT_MONITORS_FAILED: "the monitors failed (EXIT_ON_MONITOR_FAILURE=false: exit 0 instead)",
}


def crawl_outcome(stats: dict[str, Any], fail_on_monitors: bool = True) -> tuple[int, str]:
    """The exit status of a crawl from its final stats, and why."""
    reason = stats.get("finish_reason")
    failures = stats.get("store/batch_failures", 0)
    stored, scraped = stats.get("store/records", 0), stats.get("item_scraped_count", 0)
    if failures or (reason == "finished" and stored < scraped):  # (a stopped crawl stores what it holds)
        return EXIT_NOT_STORED, f"{failures} batches given up; {stored} of {scraped} records stored"
    if reason != "finished":
        return EXIT_NOT_FINISHED, f"finish reason {reason or 'unknown'!r}"
    if fail_on_monitors and stats.get("spidermon/result") == "failed":
        return EXIT_MONITORS_FAILED, f"{stats.get('spidermon/monitors/failed', '?')} monitors failed"
    return EXIT_OK, "finished"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def preflight(config: IngestionConfig) -> None:
    """The store and the metadata DB are usable, or one :class:`UsageError` naming the setting and the
    fix: found here, before any component starts, rather than as a cascade of errors from all of them."""
    from crawler.meta import MetaDB
    from crawler.meta.db import _redact
    from crawler.storage import LocalStore, open_store

    try:
        store = open_store(config.storage_uri)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"STORAGE_URI: cannot use {config.storage_uri!r} ({_first_line(exc)}): "
            "set it to a writable folder or s3://bucket/prefix",
            print_help=False,
        ) from None
    if isinstance(store, LocalStore) and not os.access(store.uri.removeprefix("file://"), os.W_OK | os.X_OK):
        raise UsageError(
            f"STORAGE_URI: the folder {config.storage_uri!r} is not writable: fix its permissions or choose another",
            print_help=False,
        )
    try:
        MetaDB.connect(config.meta_db_url).close()
    except Exception as exc:
        raise UsageError(
            f"META_DB_URL: cannot open {_redact(config.meta_db_url)!r} ({_first_line(exc)}): "
            "start the database or point META_DB_URL at a reachable one",
            print_help=False,
        ) from None


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)  # applies -s NAME=value
        assert self.settings is not None
        config = IngestionConfig.from_settings(self.settings)  # raises SettingError, a UsageError
        get_bool(self.settings, "EXIT_ON_MONITOR_FAILURE", True)
        if len(args) == 1:  # the source's own settings and arguments too (crawler/sources.py)
            try:
                spidercls = get_spider_loader(self.settings).load(args[0])
            except KeyError:
                return  # Scrapy reports the unknown spider
            declaration = getattr(spidercls, "declaration", None)
            if declaration is not None:
                declaration.read_settings(self.settings)
                declaration.check_arguments(opts.spargs)  # an ArgumentError, a UsageError
        preflight(config)

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            super().run(args, opts)  # Scrapy's usage errors
            return
        assert self.crawler_process is not None and self.settings is not None
        crawler = self._create_crawler(args[0])
        started = self.crawler_process.crawl(crawler, **opts.spargs)
        failures: list[BaseException] = []
        if hasattr(started, "add_done_callback"):  # an asyncio task (AsyncCrawlerProcess)
            started.add_done_callback(lambda task: task.cancelled() or failures.append(task.exception()))
        else:  # a Deferred
            started.addErrback(lambda failure: failures.append(failure.value))
        self.crawler_process.start()
        failure = next((f for f in failures if f is not None), None)
        if failure is not None:
            # one line; the traceback only when asked for (LOG_LEVEL=DEBUG)
            logger.debug("the crawl could not start", exc_info=failure)
            if isinstance(failure, UsageError):
                print(f"scrapy crawl: error: {failure}", file=sys.stderr)
                self.exitcode = EXIT_USAGE
            else:
                print(f"scrapy crawl: error: {type(failure).__name__}: {_first_line(failure)}", file=sys.stderr)
                self.exitcode = EXIT_NOT_FINISHED
            return
        if self.crawler_process.bootstrap_failed or crawler.stats is None:
            self.exitcode = EXIT_NOT_FINISHED
            return
        code, why = crawl_outcome(crawler.stats.get_stats(), get_bool(self.settings, "EXIT_ON_MONITOR_FAILURE", True))
        if code != EXIT_OK:
            logger.error("exit status %d: %s (%s)", code, EXIT_CODES[code], why)
        self.exitcode = code
