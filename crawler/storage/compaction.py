"""Compaction: merge a namespace's small batch files into large Parquet files, without duplicates.

For each day partition in scope the rows that are the latest record of their key *across the whole
scope* (by :func:`crawler.query.views.latest_order`, the order the views use) are streamed (DuckDB over
a pyarrow dataset of the input files with the record type's schema, so local folders and S3/R2 work
alike, and files of an older schema version read a column they lack as NULL) into Parquet files of
about ``target_bytes``. Then the swap:

1. the new files are written and indexed (``r2_partitions``);
2. the input files are unindexed, and ``catalog.json`` is rewritten: the views switch to the new files;
3. the input files are deleted from the store.

With Iceberg tables, step 1 starts with one Iceberg commit that replaces the input files by the new ones
(a reader of the table sees the old set or the new one); after the last partition, the table's snapshots
older than the retention are expired.

The views read the files the index lists, so at any instant they read files that exist and see every
record (during step 1, a view built from ``r2_partitions`` sees some twice; the latest-per-key views
hide that). Every step is idempotent, so a compaction killed at any point is completed by running it
again: its inputs are the partition's indexed Parquet files, outputs included, and the files left
unindexed by a killed run once they are older than ``orphan_grace``.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.index import PartitionIndex, iso_utc
from crawler.pipelines.writer import KeyStats, key_range
from crawler.query.views import latest_order
from crawler.storage.base import ObjectStore
from crawler.storage.layout import compacted_key, namespace_prefix, parse_key, partition_prefix

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

DEFAULT_TARGET_BYTES = 128 * 1024 * 1024
#: unindexed files younger than this may be batches being indexed right now: compaction leaves them alone
DEFAULT_ORPHAN_GRACE = timedelta(minutes=10)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Output:
    key: str
    rows: int
    size: int
    ingested: tuple[datetime, datetime]
    key_stats: KeyStats | None


@dataclass
class CompactionReport:
    namespace: str
    partitions: int = 0
    input_files: int = 0
    output_files: int = 0
    input_rows: int = 0
    output_rows: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    ndjson_deleted: int = 0
    #: Iceberg snapshots older than the retention, expired after the swap
    snapshots_expired: int = 0
    seconds: float = 0.0
    days: list[str] = field(default_factory=list)


def stored_days(store: ObjectStore, namespace: str) -> list[date]:
    """Every day partition of a namespace that holds Parquet files."""
    days = set()
    for obj in store.list(namespace_prefix(namespace)):
        parsed = parse_key(obj.key)
        if parsed is not None and parsed.namespace == namespace and parsed.format == "parquet":
            days.add(parsed.day)
    return sorted(days)


class Compactor:
    def __init__(
        self,
        store: ObjectStore,
        meta: MetaDB,
        *,
        target_bytes: int = DEFAULT_TARGET_BYTES,
        compression: str = "zstd",
        progress: Callable[[int], None] | None = None,
        batch_rows: int = 50_000,
        orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE,
        tables: IcebergTables | None = None,
        snapshot_retention: timedelta = timedelta(days=7),
    ) -> None:
        self.store = store
        self.meta = meta
        self.target_bytes = target_bytes
        self.compression = compression
        self.progress = progress or (lambda rows: None)
        self.batch_rows = batch_rows
        self.orphan_grace = orphan_grace
        self.tables = tables
        self.snapshot_retention = snapshot_retention
        self.index = PartitionIndex(store, meta, tables)

    def plan(self, namespace: str, days: Iterable[date]) -> dict[date, list[tuple[str, int]]]:
        """Input Parquet files (key, size) per day: the indexed ones, and the ones nobody indexed that are
        older than ``orphan_grace`` (left by a compaction or a crawl killed between writing and indexing).
        A younger unindexed file may be a batch that is being indexed right now: it is left alone, so
        that it is neither deleted after being indexed nor merged twice."""
        cutoff = datetime.now(UTC) - self.orphan_grace
        plan: dict[date, list[tuple[str, int]]] = {}
        for day in sorted(set(days)):
            indexed = self._indexed(namespace, day)
            files = [
                (o.key, o.size)
                for o in self.store.list(partition_prefix(namespace, day))
                if _is_parquet_of(o.key, namespace) and (o.key in indexed or o.modified < cutoff)
            ]
            if files:
                plan[day] = files
        return plan

    def _indexed(self, namespace: str, day: date) -> set[str]:
        rows = self.meta.partitions(namespace, year=day.year, month=day.month, day=day.day)
        return {row.object_key for row in rows if row.format == "parquet"}

    def forget_missing(self, namespace: str, days: Iterable[date]) -> list[str]:
        """Drop from the index the Parquet files of ``days`` that are no longer in the store (deleted by
        hand, or by an older version of this module that deleted before unindexing): views read what the
        index lists, and must never be sent to a removed file."""
        missing = []
        for day in sorted(set(days)):
            stored = {o.key for o in self.store.list(partition_prefix(namespace, day))}
            missing += sorted(self._indexed(namespace, day) - stored)
        if missing:
            logger.warning("%s: %d indexed files are missing from the store; unindexed", namespace, len(missing))
            self.meta.delete_partitions(missing)
        return missing

    def compact(self, record_type: type[Record], days: Iterable[date]) -> CompactionReport:
        started = time.monotonic()
        namespace = record_type.namespace
        days = sorted(set(days))
        missing = self.forget_missing(namespace, days)
        plan = self.plan(namespace, days)
        report = CompactionReport(namespace, partitions=len(plan), days=[d.isoformat() for d in plan])
        if not plan:
            if missing:
                self.index.write_catalog(namespace)
            return report
        filesystem, base = self.store.arrow_filesystem()
        schema = arrow_schema(record_type)
        keys = ", ".join(f'"{k}"' for k in record_type.key)
        order = latest_order(record_type)
        con = duckdb.connect(":memory:")

        def dataset(files: Iterable[str]) -> ds.Dataset:
            # With the record type's schema: files of an older schema version read the columns they lack as NULL.
            return ds.dataset([f"{base}/{k}" for k in files], schema=schema, filesystem=filesystem, format="parquet")

        con.register("scope", dataset(key for files in plan.values() for key, _ in files))
        # The latest record of every key in the scope, by the order the views use.
        con.execute(
            f"CREATE TEMP TABLE latest AS SELECT {keys}, _ingested_at AS at, _run_id AS run FROM scope "
            f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1"
        )
        for day, files in plan.items():
            report.input_files += len(files)
            report.input_bytes += sum(size for _, size in files)
            report.input_rows += sum(
                pq.ParquetFile(f"{base}/{k}", filesystem=filesystem).metadata.num_rows for k, _ in files
            )
            con.register("day_files", dataset(k for k, _ in files))
            reader = con.sql(
                f"SELECT d.* FROM day_files d JOIN latest l USING ({keys}) "
                f"WHERE d._ingested_at = l.at AND d._run_id = l.run "
                f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY {order}) = 1 "
                # in key order: each row group covers a narrow range of keys, which a lookup by key
                # finds from the row-group statistics; and the output files' ranges do not overlap
                f"ORDER BY {keys}"
            ).to_arrow_reader(self.batch_rows)
            outputs = self._write(namespace, day, reader, schema, record_type.key[0])
            con.unregister("day_files")
            self._swap(namespace, day, [k for k, _ in files], outputs, record_type.schema_version)
            report.output_files += len(outputs)
            report.output_rows += sum(o.rows for o in outputs)
            report.output_bytes += sum(o.size for o in outputs)
        con.close()
        if self.tables is not None:
            report.snapshots_expired = self.tables.expire_snapshots(namespace, self.snapshot_retention)
        report.seconds = time.monotonic() - started
        return report

    def _write(
        self, namespace: str, day: date, reader: pa.RecordBatchReader, schema: pa.Schema, key: str
    ) -> list[_Output]:
        """Stream rows into Parquet files of about ``target_bytes``."""
        outputs: list[_Output] = []
        writer: pq.ParquetWriter | None = None
        path = ""
        rows = 0
        span: list[datetime] = []
        keys: list[Any] = []
        with tempfile.TemporaryDirectory(prefix="compact-") as tmp:

            def finish() -> None:
                nonlocal writer
                assert writer is not None
                writer.close()
                writer = None
                object_key = compacted_key(namespace, day)
                size = os.path.getsize(path)
                self.store.put_file(object_key, path, "application/vnd.apache.parquet")
                bounds = key_range(keys)
                # one row per key: the scope was de-duplicated
                stats = KeyStats(bounds[0], bounds[1], unique=True) if bounds else None
                outputs.append(_Output(object_key, rows, size, (min(span), max(span)), stats))
                os.unlink(path)

            for batch in reader:
                if batch.num_rows == 0:
                    continue
                table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                if writer is None:
                    path = os.path.join(tmp, f"part-{len(outputs)}.parquet")
                    writer = pq.ParquetWriter(path, schema, compression=self.compression)
                    rows, span, keys = 0, [], []
                writer.write_table(table)
                rows += table.num_rows
                column = table.column("_ingested_at")
                span += [pc.min(column).as_py(), pc.max(column).as_py()]
                bounds = pc.min_max(table.column(key))
                if table.column(key).null_count == 0:
                    keys += [bounds["min"].as_py(), bounds["max"].as_py()]
                else:
                    keys.append(None)  # no range for a file with a null key
                self.progress(table.num_rows)
                if os.path.getsize(path) >= self.target_bytes:
                    finish()
            if writer is not None:
                finish()
        return outputs

    def _swap(self, namespace: str, day: date, inputs: list[str], outputs: list[_Output], schema_version: int) -> None:
        """Index the new files and unindex the old ones in one transaction, publish the catalog, and only
        then delete the old files: a view built from the index at any instant reads files that exist, and
        each row once. A kill before the delete leaves the old files unindexed: the next reconcile removes
        them (see :mod:`crawler.storage.reconcile`)."""
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        if self.tables is not None:
            # first, as a batch is committed before it is indexed: the table switches in one commit
            self.tables.replace(namespace, removed=inputs, added=[out.key for out in outputs], operation="compact")
        self.meta.replace_partitions(
            [
                PartitionRow(
                    object_key=out.key,
                    namespace=namespace,
                    year=day.year,
                    month=day.month,
                    day=day.day,
                    format="parquet",
                    records=out.rows,
                    bytes=out.size,
                    min_ingested_at=iso_utc(out.ingested[0]),
                    max_ingested_at=iso_utc(out.ingested[1]),
                    run_id="compaction",
                    schema_version=schema_version,
                    created_at=now,
                )
                for out in outputs
            ],
            inputs,  # in the same transaction: a view sees the old files or the new, never both
        )
        self.index.write_catalog(namespace, {out.key: out.key_stats for out in outputs if out.key_stats})
        self.store.delete(inputs)

    def expire_raw(self, namespace: str, keep_days: int, today: date | None = None) -> int:
        """Delete NDJSON batches of partitions older than ``keep_days``; the Parquet copies stay."""
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
        expired = []
        for obj in self.store.list(namespace_prefix(namespace)):
            parsed = parse_key(obj.key)
            if parsed and parsed.namespace == namespace and parsed.format == "ndjson" and parsed.day < cutoff:
                expired.append(obj.key)
        if expired:
            self.meta.delete_partitions(expired)
            self.index.write_catalog(namespace)
            self.store.delete(expired)
        return len(expired)


def _is_parquet_of(key: str, namespace: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed.namespace == namespace and parsed.format == "parquet"
