"""``scrapy query "SELECT …"``: SQL (DuckDB) over the stored records of every namespace."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig
from crawler.items import Record
from crawler.query.output import render_json, render_table
from crawler.storage import open_store

FORMATS = ("table", "json", "csv", "parquet")


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
        parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
        parser.add_argument("--output", "-O", metavar="FILE", help="write the result to FILE instead of stdout")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        # imported here: every scrapy process (a crawl too) loads every command module
        import duckdb

        from crawler.query.views import connect

        if len(args) != 1:
            raise UsageError("give one SQL query, quoted")
        assert self.settings is not None
        config = IngestionConfig.from_settings(self.settings)
        con = connect(open_store(config.storage_uri))
        if opts.format == "parquet" and not opts.output:
            raise UsageError("--format parquet needs --output FILE")
        try:
            relation = con.sql(args[0])
            if opts.format in ("csv", "parquet"):
                write_file(relation, opts.format, opts.output)
                return
            columns, rows = relation.columns, relation.fetchall()
        except duckdb.Error as exc:
            print(f"query failed: {exc}", file=sys.stderr)
            self.exitcode = 1
            return
        text = render_json(columns, rows) if opts.format == "json" else render_table(columns, rows)
        if opts.output:
            Path(opts.output).write_text(text + "\n")
        else:
            print(text)


def write_file(relation: Any, fmt: str, output: str | None) -> None:
    """CSV (nested values as text) to a file or stdout; Parquet (zstd) to a file."""
    if fmt == "parquet":
        relation.write_parquet(output, compression="zstd")
        return
    if output:
        relation.write_csv(output, header=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.csv"
        relation.write_csv(str(path), header=True)
        sys.stdout.write(path.read_text())
