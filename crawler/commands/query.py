"""``scrapy query "SELECT …"``: SQL (DuckDB) over the stored records of every namespace."""

from __future__ import annotations

import argparse
import sys
from typing import Any, ClassVar

import duckdb
from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig
from crawler.items import Record
from crawler.query.output import render_json, render_table
from crawler.query.views import connect
from crawler.storage import open_store


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return '[options] "SQL"'

    def short_desc(self) -> str:
        return (
            "Run SQL over the stored data (views: " + ", ".join(sorted(r.table for r in Record.registry.values())) + ")"
        )

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--format", choices=("table", "json"), default="table", help="output format")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        if len(args) != 1:
            raise UsageError("give one SQL query, quoted")
        assert self.settings is not None
        config = IngestionConfig.from_settings(self.settings)
        con = connect(open_store(config.storage_uri))
        try:
            cursor = con.execute(args[0])
        except duckdb.Error as exc:
            print(f"query failed: {exc}", file=sys.stderr)
            self.exitcode = 1
            return
        columns = [d[0] for d in cursor.description or ()]
        rows = cursor.fetchall()
        print(render_json(columns, rows) if opts.format == "json" else render_table(columns, rows))
