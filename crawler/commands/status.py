"""``scrapy status [--format table|json]``: one line per declared source (``crawler/spiders/*/source.py``)
— its schedule, last run, finish reason, items, error rate, cursors, backlog, dead letters waiting, bytes
stored in its namespaces, and with ``REDIS_URL`` set the distributed crawl's live workers, queued and
leased requests."""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy_redis import connection

from crawler.config import IngestionConfig
from crawler.distributed.coordinator import Coordinator, Keys
from crawler.meta import MetaDB
from crawler.query.output import render_json, render_table
from crawler.sources import Source, all_sources

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


def source_status(meta: MetaDB, declaration: Source, server: Any = None, key_prefix: str = "crawler") -> dict[str, Any]:
    source = declaration.name
    runs = meta.last_runs(source, limit=1)
    run = runs[0] if runs else {}
    stats = run.get("stats") or {}
    items, errors, dead = run.get("items") or 0, run.get("errors"), run.get("dead_letters") or 0
    cursors = {
        row["cursor_key"]: row["cursor_value"]
        for row in meta.cursors(source)
        if not row["cursor_key"].startswith("etag:")
    }
    stored = sum(p.bytes for record in declaration.records for p in meta.partitions(record.namespace))
    schedule = declaration.schedule
    return {
        "source": source,
        "schedule": (
            f"{schedule.cron} " + " ".join(f"{k}={v}" for k, v in schedule.arguments.items()) if schedule else None
        ),
        "last_run": run.get("started_at"),
        "finish_reason": run.get("finish_reason"),
        "items": items,
        # the share of inputs that became dead letters (a failed request is also logged; count it once)
        "error_rate": round(dead / max(items + dead, 1), 4) if run else None,
        "errors": errors,
        "cursors": cursors,
        "backlog": stats.get(f"{source}/backlog"),
        "dead_letters": meta.count_failed(source, include_replayed=False),
        "bytes_stored": stored,
        "distributed": (
            Coordinator(server, Keys.for_spider(key_prefix, source), worker="status").snapshot()
            if server is not None
            else None
        ),
    }


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
        server = connection.from_settings(self.settings) if self.settings.get("REDIS_URL") else None
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
