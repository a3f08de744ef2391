"""``scrapy schemas [--check]``: write ``db/r2-schemas.md`` from the record types."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand

from crawler.query.schemas_doc import render

DEFAULT_PATH = Path("db") / "r2-schemas.md"


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def short_desc(self) -> str:
        return "Generate db/r2-schemas.md from the record types"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--output", default=str(DEFAULT_PATH), help="where to write (default: db/r2-schemas.md)")
        parser.add_argument("--check", action="store_true", help="exit 1 if the file is not up to date")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        path = Path(opts.output)
        text = render()
        if opts.check:
            if not path.exists() or path.read_text() != text:
                print(f"{path} is stale: run `scrapy schemas`", file=sys.stderr)
                self.exitcode = 1
            return
        path.write_text(text)
        print(f"wrote {path}")
