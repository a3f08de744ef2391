"""Compaction: merge a namespace's small batch files into large Parquet files, without duplicates.

For each day partition in scope the rows that are the latest record of their key *across the whole
scope* are streamed (DuckDB over a pyarrow dataset of the input files, so local folders and S3/R2 work
alike) into Parquet files of about ``target_bytes``, cast to the record type's schema. Then the swap:

1. the new files are written and indexed (``r2_partitions``);
2. the input files are deleted from the store, then from the index;
3. ``catalog.json`` is rewritten.

A reader at any instant sees every record (between 1 and 2 it sees some twice; the latest-per-key
views hide that). Every step is idempotent, so a compaction killed at any point is completed by
running it again: its inputs are simply all Parquet files of the partition, outputs included.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.index import PartitionIndex, iso_utc
from crawler.storage.base import ObjectStore
from crawler.storage.layout import compacted_key, namespace_prefix, parse_key, partition_prefix

DEFAULT_TARGET_BYTES = 128 * 1024 * 1024


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
    ) -> None:
        self.store = store
        self.meta = meta
        self.target_bytes = target_bytes
        self.compression = compression
        self.progress = progress or (lambda rows: None)
        self.batch_rows = batch_rows
        self.index = PartitionIndex(store, meta)

    def plan(self, namespace: str, days: Iterable[date]) -> dict[date, list[tuple[str, int]]]:
        """Input Parquet files (key, size) per day; days with at most one file and nothing to merge stay."""
        wanted = set(days)
        plan: dict[date, list[tuple[str, int]]] = {}
        for day in sorted(wanted):
            files = [
                (o.key, o.size)
                for o in self.store.list(partition_prefix(namespace, day))
                if _is_parquet_of(o.key, namespace)
            ]
            if files:
                plan[day] = files
        return plan

    def compact(self, record_type: type[Record], days: Iterable[date]) -> CompactionReport:
        started = time.monotonic()
        namespace = record_type.namespace
        plan = self.plan(namespace, days)
        report = CompactionReport(namespace, partitions=len(plan), days=[d.isoformat() for d in plan])
        if not plan:
            return report
        filesystem, base = self.store.arrow_filesystem()
        schema = arrow_schema(record_type)
        keys = ", ".join(f'"{k}"' for k in record_type.key)
        con = duckdb.connect(":memory:")
        all_files = [key for files in plan.values() for key, _ in files]
        con.register("scope", ds.dataset([f"{base}/{k}" for k in all_files], filesystem=filesystem, format="parquet"))
        # The newest version of every key in the scope; ties broken by run id, as the views do.
        con.execute(
            f"CREATE TEMP TABLE latest AS SELECT {keys}, arg_max(_ingested_at, (_ingested_at, _run_id)) AS at, "
            f"arg_max(_run_id, (_ingested_at, _run_id)) AS run FROM scope GROUP BY ALL"
        )
        for day, files in plan.items():
            report.input_files += len(files)
            report.input_bytes += sum(size for _, size in files)
            report.input_rows += sum(
                pq.ParquetFile(f"{base}/{k}", filesystem=filesystem).metadata.num_rows for k, _ in files
            )
            con.register(
                "day_files", ds.dataset([f"{base}/{k}" for k, _ in files], filesystem=filesystem, format="parquet")
            )
            reader = con.sql(
                f"SELECT d.* FROM day_files d JOIN latest l USING ({keys}) "
                f"WHERE d._ingested_at = l.at AND d._run_id = l.run "
                f"QUALIFY row_number() OVER (PARTITION BY {keys}) = 1"
            ).to_arrow_reader(self.batch_rows)
            outputs = self._write(namespace, day, reader, schema)
            con.unregister("day_files")
            self._swap(namespace, day, [k for k, _ in files], outputs, record_type.schema_version)
            report.output_files += len(outputs)
            report.output_rows += sum(rows for _, rows, _, _ in outputs)
            report.output_bytes += sum(size for _, _, size, _ in outputs)
        con.close()
        self.index.write_catalog(namespace)
        report.seconds = time.monotonic() - started
        return report

    def _write(
        self, namespace: str, day: date, reader: pa.RecordBatchReader, schema: pa.Schema
    ) -> list[tuple[str, int, int, tuple[datetime, datetime]]]:
        """Stream rows into Parquet files of about ``target_bytes``; (key, rows, bytes, ingested range)."""
        outputs: list[tuple[str, int, int, tuple[datetime, datetime]]] = []
        writer: pq.ParquetWriter | None = None
        path = ""
        rows = 0
        span: list[datetime] = []
        with tempfile.TemporaryDirectory(prefix="compact-") as tmp:

            def finish() -> None:
                nonlocal writer
                assert writer is not None
                writer.close()
                writer = None
                key = compacted_key(namespace, day)
                size = os.path.getsize(path)
                self.store.put_file(key, path, "application/vnd.apache.parquet")
                outputs.append((key, rows, size, (min(span), max(span))))
                os.unlink(path)

            for batch in reader:
                if batch.num_rows == 0:
                    continue
                table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
                if writer is None:
                    path = os.path.join(tmp, f"part-{len(outputs)}.parquet")
                    writer = pq.ParquetWriter(path, schema, compression=self.compression)
                    rows, span = 0, []
                writer.write_table(table)
                rows += table.num_rows
                column = table.column("_ingested_at")
                span += [pc.min(column).as_py(), pc.max(column).as_py()]
                self.progress(table.num_rows)
                if os.path.getsize(path) >= self.target_bytes:
                    finish()
            if writer is not None:
                finish()
        return outputs

    def _swap(self, namespace: str, day: date, inputs: list[str], outputs: list[tuple], schema_version: int) -> None:
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.meta.add_partitions(
            [
                PartitionRow(
                    object_key=key,
                    namespace=namespace,
                    year=day.year,
                    month=day.month,
                    day=day.day,
                    format="parquet",
                    records=rows,
                    bytes=size,
                    min_ingested_at=iso_utc(lo),
                    max_ingested_at=iso_utc(hi),
                    run_id="compaction",
                    schema_version=schema_version,
                    created_at=now,
                )
                for key, rows, size, (lo, hi) in outputs
            ]
        )
        self.store.delete(inputs)
        self.meta.delete_partitions(inputs)

    def expire_raw(self, namespace: str, keep_days: int, today: date | None = None) -> int:
        """Delete NDJSON batches of partitions older than ``keep_days``; the Parquet copies stay."""
        cutoff = (today or datetime.now(UTC).date()) - timedelta(days=keep_days)
        expired = []
        for obj in self.store.list(namespace_prefix(namespace)):
            parsed = parse_key(obj.key)
            if parsed and parsed.namespace == namespace and parsed.format == "ndjson" and parsed.day < cutoff:
                expired.append(obj.key)
        if expired:
            self.store.delete(expired)
            self.meta.delete_partitions(expired)
            self.index.write_catalog(namespace)
        return len(expired)


def _is_parquet_of(key: str, namespace: str) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed.namespace == namespace and parsed.format == "parquet"
