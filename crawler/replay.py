"""``scrapy replay-failed <source>``: crawl again what the source's dead letters name.

Registered through the ``scrapy.commands`` entry point (a command name with a hyphen cannot be a module
in ``COMMANDS_MODULE``).

The spider turns its dead letters into arguments (``SourceSpider.replay_arguments``); those covered are
marked replayed only when the replay crawl finished (finish reason ``finished``) and stored every batch
(no ``store/batch_failures``). What fails again in such a crawl becomes a new dead letter. A replay that
was stopped (SIGTERM: ``shutdown``), failed to start or could not store its records leaves them waiting,
and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.crawler import Crawler
from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig
from crawler.meta import MetaDB


class Command(ScrapyCommand):
    requires_project = True
    default_settings: ClassVar[dict[str, Any]] = {}

    def syntax(self) -> str:
        return "<source>"

    def short_desc(self) -> str:
        return "Re-queue a source's dead letters: crawl again what they name"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--limit", type=int, default=10_000, help="at most this many dead letters")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None and self.crawler_process is not None
        if len(args) != 1:
            raise UsageError("give one source")
        loader = self.crawler_process.spider_loader
        if args[0] not in loader.list():
            raise UsageError(f"unknown source {args[0]!r}; sources: {', '.join(sorted(loader.list()))}")
        spidercls = loader.load(args[0])
        source = getattr(spidercls, "source", spidercls.name)
        meta_db_url = IngestionConfig.from_settings(self.settings).meta_db_url
        meta = MetaDB.connect(meta_db_url)
        try:
            failed = meta.failed(source, limit=opts.limit)
        finally:
            meta.close()
        arguments, ids = spidercls.replay_arguments(failed)
        if not arguments:
            print(f"{source}: {len(failed)} dead letter(s), none to replay")
            return
        print(f"{source}: replaying {len(ids)} of {len(failed)} dead letter(s)", flush=True)
        crawler = self.crawler_process.create_crawler(spidercls)
        self.crawler_process.crawl(crawler, **arguments)
        self.crawler_process.start()
        problem = replay_problem(crawler) or ("did not start" if self.crawler_process.bootstrap_failed else None)
        if problem is not None:
            print(
                f"{source}: the replay crawl {problem}; its {len(ids)} dead letter(s) stay waiting",
                file=sys.stderr,
            )
            self.exitcode = 1
            return
        meta = MetaDB.connect(meta_db_url)
        try:
            meta.mark_replayed(ids)
        finally:
            meta.close()
        print(f"{source}: {len(ids)} dead letter(s) marked replayed")


def replay_problem(crawler: Crawler) -> str | None:
    """Why a finished replay crawl must not mark its dead letters replayed, or None when it may."""
    try:
        stats = crawler.stats
    except RuntimeError:  # never set: the crawl failed before it started
        return "did not start"
    reason = stats.get_value("finish_reason")
    if reason != "finished":
        return f"ended with finish reason {reason!r}" if reason else "did not finish"
    batch_failures = stats.get_value("store/batch_failures")
    if batch_failures:
        return f"could not store {batch_failures} batch(es) of records"
    return None
