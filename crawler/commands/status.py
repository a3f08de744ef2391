"""``scrapy status [--format table|json]``: one line per declared source (``crawler/spiders/*/source.py``)
— its schedule, last run, finish reason, items, error rate, cursors, backlog, dead letters waiting, bytes
stored in its namespaces, and with ``REDIS_URL`` set the distributed crawl's live workers, queued and
leased requests. The data comes from :mod:`crawler.status` (the dashboard plots the same)."""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand

from crawler.config import IngestionConfig
from crawler.meta import MetaDB
from crawler.query.output import render_json, render_table
from crawler.sources import all_sources
from crawler.status import redis_server, source_status

COLUMNS = (
    "source",
    "schedule",
    "last_run",
    "finish_reason",
    "items",
    "error_rate",
    "errors",
    "cursors",
    "backlog",
    "dead_letters",
    "bytes_stored",
    "distributed",
)


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def short_desc(self) -> str:
        return "Show every source's last run, cursors, backlog, dead letters and stored bytes"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        parser.add_argument("--format", choices=("table", "json"), default="table")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        assert self.settings is not None
        meta = MetaDB.connect(IngestionConfig.from_settings(self.settings).meta_db_url)
        server = redis_server(self.settings)
        prefix = self.settings.get("DISTRIBUTED_KEY_PREFIX", "crawler")
        rows = [source_status(meta, source, server, prefix) for _, source in sorted(all_sources().items())]
        meta.close()
        if opts.format == "json":
            print(render_json(COLUMNS, [[row[c] for c in COLUMNS] for row in rows]))
            return
        table = [[_cell(c, row[c]) for c in COLUMNS] for row in rows]
        print(render_table(COLUMNS, table))


def _cell(column: str, value: Any) -> Any:
    if column == "cursors":
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())[:3]) + (" …" if len(value) > 3 else "")
    if column == "distributed" and value is not None:
        return f"{value['workers']} workers, {value['queued']} queued, {value['leased']} leased"
    return value
