"""``scrapy crawl``: Scrapy's own command, which first checks the platform's settings.

A setting of the wrong type (``-s BATCH_MAX_RECORDS=abc``, or the environment) stops the command before
anything starts, with one line naming the setting and the type it expects (``scrapy crawl: error:
BATCH_MAX_RECORDS: expected a positive integer, got 'abc'``) and exit status 2. Settings a spider sets
itself are checked when the crawl starts (:class:`crawler.extensions.services.Services`), also before any
request or record.
"""

from __future__ import annotations

import argparse

from scrapy.commands.crawl import Command as ScrapyCrawlCommand
from scrapy.spiderloader import get_spider_loader

from crawler.config import IngestionConfig


class Command(ScrapyCrawlCommand):
    def process_options(self, args: list[str], opts: argparse.Namespace) -> None:
        super().process_options(args, opts)  # applies -s NAME=value
        assert self.settings is not None
        IngestionConfig.from_settings(self.settings)  # raises SettingError, a UsageError
        if len(args) == 1:  # the source's own settings too (crawler/sources.py)
            try:
                spidercls = get_spider_loader(self.settings).load(args[0])
            except KeyError:
                return  # Scrapy reports the unknown spider
            declaration = getattr(spidercls, "declaration", None)
            if declaration is not None:
                declaration.read_settings(self.settings)
