"""``scrapy docs [--check]``: regenerate the files made from the source declarations (:mod:`crawler.docs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand

from crawler import docs


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def short_desc(self) -> str:
        return "Regenerate the README's source tables, deploy files and db/r2-schemas.md from the sources"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is stale")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        root = Path.cwd()
        if opts.check:
            stale = docs.stale(root)
            for path in stale:
                print(f"{path} is stale: run `scrapy docs`", file=sys.stderr)
            self.exitcode = 1 if stale else 0
            return
        for path in docs.write(root):
            print(f"wrote {path}")
