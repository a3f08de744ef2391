"""``scrapy describe <source>``: a source's arguments, modes, namespaces, settings and schedule."""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.docs import describe
from crawler.sources import all_sources


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "<source>"

    def short_desc(self) -> str:
        return "Describe a source: its arguments, settings, namespaces and modes"

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        sources = all_sources()
        if len(args) != 1 or args[0] not in sources:
            raise UsageError(f"give one source: {', '.join(sorted(sources))}", print_help=False)
        print(describe(sources[args[0]]))
