"""``scrapy query "SELECT …"``: SQL (DuckDB) over the stored records of every namespace."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig, get_bool
from crawler.items import Record
from crawler.query.output import render_json, render_table
from crawler.storage import ObjectStore, open_store

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
        parser.add_argument(
            "--iceberg",
            action="store_true",
            help="read the namespaces' Iceberg tables (their current snapshots), not the partition index "
            "(QUERY_ICEBERG)",
        )

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        # imported here: every scrapy process (a crawl too) loads every command module
        import duckdb

        from crawler.query.views import connect

        if len(args) != 1:
            raise UsageError("give one SQL query, quoted")
        assert self.settings is not None
        config = IngestionConfig.from_settings(self.settings)
        if opts.format == "parquet" and not opts.output:
            raise UsageError("--format parquet needs --output FILE")
        try:
            count = len(duckdb.extract_statements(args[0]))
        except duckdb.Error:
            count = 1  # a syntax error: reported when the query runs
        if count != 1:  # as the HTTP API: one statement, so a result is never half of the work
            raise UsageError(f"give one SQL statement, got {count}", print_help=False)
        iceberg = opts.iceberg or get_bool(self.settings, "QUERY_ICEBERG", False)
        if iceberg and config.iceberg is None:
            raise UsageError("--iceberg reads the Iceberg tables: ICEBERG_ENABLED is off", print_help=False)
        with _store(config.storage_uri) as store:
            tables = None
            if iceberg and config.iceberg is not None and _catalog_exists(config.iceberg.catalog_uri):
                from crawler.storage.iceberg import open_tables

                tables = open_tables(config.iceberg, store)
            self._answer(connect(store, tables=tables), args[0], opts)

    def _answer(self, con: Any, sql: str, opts: argparse.Namespace) -> None:
        import duckdb

        try:
            relation = con.sql(sql)
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


@contextmanager
def _store(uri: str) -> Iterator[ObjectStore]:
    """The store to query; a local folder that does not exist is an empty store, and is not created."""
    local = uri.strip().removeprefix("file://") if "://" not in uri or uri.startswith("file://") else None
    if local is not None and not Path(os.path.expanduser(local)).exists():
        with tempfile.TemporaryDirectory(prefix="empty-store-") as empty:
            yield open_store(empty)
        return
    yield open_store(uri)


def _catalog_exists(uri: str) -> bool:
    """Whether a SQLite catalog's file exists (opening it would create it: a query writes nothing);
    other catalogs are servers, asked."""
    if not uri.startswith("sqlite:///") or uri.endswith(":memory:"):
        return "://" in uri or Path(uri).exists()
    return Path(uri.removeprefix("sqlite:///")).exists()


def _nested_as_json(relation: Any) -> Any:
    """The relation with every nested column (list, struct, map, …) as JSON text: CSV cells that any tool
    reads back, not DuckDB's display form."""
    nested = ("[]", "STRUCT(", "MAP(", "UNION(")
    columns = [
        f"to_json({_quoted(name)}) AS {_quoted(name)}" if any(n in str(kind) for n in nested) else _quoted(name)
        for name, kind in zip(relation.columns, relation.types, strict=True)
    ]
    return relation.project(", ".join(columns))


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_file(relation: Any, fmt: str, output: str | None) -> None:
    """CSV (nested values as JSON) to a file or stdout; Parquet (zstd) to a file."""
    if fmt == "parquet":
        relation.write_parquet(output, compression="zstd")
        return
    relation = _nested_as_json(relation)
    if output:
        relation.write_csv(output, header=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.csv"
        relation.write_csv(str(path), header=True)
        sys.stdout.write(path.read_text())
