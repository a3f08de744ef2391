"""``scrapy compact <namespace> [--day YYYY-MM-DD | --month YYYY-MM]``: merge small batch files into
large Parquet files without duplicates, then expire raw NDJSON older than ``RAW_RETENTION_DAYS``."""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta
from typing import Any, ClassVar

from scrapy.commands import ScrapyCommand
from scrapy.exceptions import UsageError

from crawler.config import IngestionConfig
from crawler.items import Record
from crawler.meta import MetaDB
from crawler.storage import open_store


class Command(ScrapyCommand):
    requires_project = True
    requires_crawler_process = False
    default_settings: ClassVar[dict[str, Any]] = {"LOG_ENABLED": False}

    def syntax(self) -> str:
        return "<namespace> [--day YYYY-MM-DD | --month YYYY-MM]"

    def short_desc(self) -> str:
        return "Compact a namespace's batch files into large de-duplicated Parquet files"

    def add_options(self, parser: argparse.ArgumentParser) -> None:
        super().add_options(parser)
        scope = parser.add_mutually_exclusive_group()
        scope.add_argument("--day", type=date.fromisoformat, help="one day partition (default: every partition)")
        scope.add_argument("--month", type=_month, help="every day partition of a month")
        parser.add_argument("--target-bytes", type=int, help="size of the output files (COMPACTION_TARGET_BYTES)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def run(self, args: list[str], opts: argparse.Namespace) -> None:
        # imported here: every scrapy process (a crawl too) loads every command module
        from tqdm import tqdm

        from crawler.storage.compaction import Compactor, stored_days
        from crawler.storage.iceberg import open_tables
        from crawler.storage.reconcile import reconcile

        if len(args) != 1 or args[0] not in Record.registry:
            raise UsageError(f"give one namespace: {', '.join(sorted(Record.registry))}")
        assert self.settings is not None
        record_type = Record.registry[args[0]]
        config = IngestionConfig.from_settings(self.settings)
        store = open_store(config.storage_uri)
        meta = MetaDB.connect(config.meta_db_url)
        tables = open_tables(config.iceberg, store) if config.iceberg else None
        reconcile(store, meta, [record_type.namespace], tables=tables)  # what a killed crawl or compaction left
        days = stored_days(store, record_type.namespace)
        if opts.day:
            days = [d for d in days if d == opts.day]
        elif opts.month:
            days = [d for d in days if (d.year, d.month) == opts.month]
        target = opts.target_bytes or self.settings.getint("COMPACTION_TARGET_BYTES")
        with tqdm(
            unit=" rows", desc=f"compacting {record_type.namespace}", disable=opts.no_progress, file=sys.stderr
        ) as bar:
            compactor = Compactor(
                store,
                meta,
                target_bytes=target,
                compression=config.parquet_compression,
                progress=bar.update,
                tables=tables,
                snapshot_retention=config.iceberg.snapshot_retention if config.iceberg else timedelta(days=7),
            )
            plan = compactor.plan(record_type.namespace, days)
            bar.total = (
                sum(
                    p.records
                    for d in plan
                    for p in meta.partitions(record_type.namespace, year=d.year, month=d.month, day=d.day)
                    if p.format == "parquet"
                )
                or None
            )
            report = compactor.compact(record_type, days)
        retention = self.settings.getint("RAW_RETENTION_DAYS")
        if retention > 0:
            report.ndjson_deleted = compactor.expire_raw(record_type.namespace, retention)
        meta.close()
        print(
            f"{report.namespace}: {report.partitions} partition(s), {report.input_files} files / "
            f"{report.input_rows} rows / {report.input_bytes} bytes -> {report.output_files} files / "
            f"{report.output_rows} rows / {report.output_bytes} bytes in {report.seconds:.1f} s"
            + (f"; {report.ndjson_deleted} NDJSON batches past retention deleted" if report.ndjson_deleted else "")
            + (f"; {report.snapshots_expired} Iceberg snapshots expired" if report.snapshots_expired else "")
        )


def _month(value: str) -> tuple[int, int]:
    year, month = value.split("-")
    return int(year), int(month)
