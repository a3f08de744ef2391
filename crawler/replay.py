"""``scrapy replay-failed <source>``: crawl again what the source's dead letters name.

Registered through the ``scrapy.commands`` entry point (a command name with a hyphen cannot be a module
in ``COMMANDS_MODULE``).

The spider turns its dead letters into arguments (``SourceSpider.replay_arguments``); those covered are
marked replayed once the crawl has run. What fails again becomes a new dead letter.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
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
        meta = MetaDB.connect(IngestionConfig.from_settings(self.settings).meta_db_url)
        failed = meta.failed(source, limit=opts.limit)
        arguments, ids = spidercls.replay_arguments(failed)
        if not arguments:
            print(f"{source}: {len(failed)} dead letter(s), none to replay")
            meta.close()
            return
        print(f"{source}: replaying {len(ids)} of {len(failed)} dead letter(s)")
        self.crawler_process.crawl(spidercls, **arguments)
        self.crawler_process.start()
        meta.mark_replayed(ids)
        meta.close()
