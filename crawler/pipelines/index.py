"""Index stored objects: a row per object in ``r2_partitions`` and the namespace's ``catalog.json``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import orjson

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.writer import KeyStats, StoredObject
from crawler.storage import ObjectStore
from crawler.storage.layout import catalog_key, partition_name

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

__all__ = ["PartitionIndex", "catalog_key", "iso_utc"]


class PartitionIndex:
    """Blocking; called from the ordered metadata thread so catalog rewrites never interleave.

    With ``tables`` (or a function returning them, called on first use), the Parquet files are committed
    to their namespaces' Iceberg tables first: a file the index lists is in its table (a crash between the
    two leaves a committed file the index lacks, which :mod:`crawler.storage.reconcile` puts right)."""

    def __init__(
        self,
        store: ObjectStore,
        meta: MetaDB,
        tables: IcebergTables | Callable[[], IcebergTables | None] | None = None,
    ) -> None:
        self.store = store
        self.meta = meta
        self._tables = tables

    @property
    def tables(self) -> IcebergTables | None:
        if callable(self._tables):
            self._tables = self._tables()
        return self._tables

    def record(self, objects: list[StoredObject], run_id: str) -> None:
        if self.tables is not None:
            for namespace in sorted({obj.namespace for obj in objects}):
                parquet = [obj.key for obj in objects if obj.namespace == namespace and obj.format == "parquet"]
                self.tables.add(namespace, parquet)
        now = iso_utc(datetime.now(UTC))
        self.meta.add_partitions(
            [
                PartitionRow(
                    object_key=obj.key,
                    namespace=obj.namespace,
                    year=obj.day.year,
                    month=obj.day.month,
                    day=obj.day.day,
                    format=obj.format,
                    records=obj.records,
                    bytes=obj.bytes,
                    min_ingested_at=iso_utc(obj.min_ingested_at),
                    max_ingested_at=iso_utc(obj.max_ingested_at),
                    run_id=run_id,
                    schema_version=obj.schema_version,
                    created_at=now,
                )
                for obj in objects
            ]
        )
        for namespace in {obj.namespace for obj in objects}:
            self.write_catalog(
                namespace, {obj.key: obj.key_stats for obj in objects if obj.namespace == namespace and obj.key_stats}
            )

    def write_catalog(self, namespace: str, key_stats: Mapping[str, KeyStats] | None = None) -> dict[str, Any]:
        """Rewrite ``<namespace>/_metadata/catalog.json`` from the partition table (its source of truth).

        Each Parquet file is listed with its schema version and, when known, the range of its first key
        column and whether its keys are unique (``pk_min``, ``pk_max``, ``pk_unique``): from ``key_stats``
        for new files, else from the previous catalog.
        Under the metadata DB's lock: a worker that reads the table later also writes later, so the catalog
        left behind by concurrent workers (distributed crawls, shards) lists every partition."""
        with self.meta.exclusive(f"catalog:{namespace}"):
            return self._write_catalog(namespace, key_stats or {})

    def _previous_stats(self, namespace: str) -> dict[str, KeyStats]:
        try:
            previous = orjson.loads(self.store.get_bytes(catalog_key(namespace)))
        except (KeyError, orjson.JSONDecodeError):
            return {}
        known: dict[str, KeyStats] = {}
        for part in (previous.get("partitions") or {}).values():
            for entry in part.get("files", ()):
                if entry.get("pk_min") is not None and entry.get("pk_max") is not None:
                    known[entry["key"]] = KeyStats(entry["pk_min"], entry["pk_max"], bool(entry.get("pk_unique")))
        return known

    def _write_catalog(self, namespace: str, key_stats: Mapping[str, KeyStats]) -> dict[str, Any]:
        rows = self.meta.partitions(namespace)
        record_type = Record.registry[namespace]
        stats = {**self._previous_stats(namespace), **key_stats}
        partitions: dict[str, dict[str, Any]] = defaultdict(lambda: {"files": [], "rows": 0, "bytes": 0})
        for row in rows:
            part = partitions[partition_name(date(row.year, row.month, row.day))]
            entry = {"key": row.object_key, "format": row.format, "rows": row.records, "bytes": row.bytes}
            if row.format == "parquet":
                entry["schema_version"] = row.schema_version
                if row.object_key in stats:
                    known = stats[row.object_key]
                    entry.update(pk_min=known.low, pk_max=known.high, pk_unique=known.unique)
            part["files"].append(entry)
            part["bytes"] += row.bytes
            if row.format == "parquet":
                part["rows"] += row.records
        parquet = [row for row in rows if row.format == "parquet"]
        schema = arrow_schema(record_type)
        catalog = {
            "namespace": namespace,
            "table": record_type.table,
            "schema_version": record_type.schema_version,
            "primary_key": list(record_type.key),
            "schema": [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema],
            "record_count": sum(row.records for row in parquet),
            "first_ingested_at": min((row.min_ingested_at for row in parquet), default=None),
            "last_ingested_at": max((row.max_ingested_at for row in parquet), default=None),
            "partitions": dict(sorted(partitions.items())),
            "updated_at": iso_utc(datetime.now(UTC)),
        }
        if self.tables is not None:
            # the Iceberg table the same files are committed to, at the snapshot that holds them
            catalog["iceberg"] = self.tables.describe(record_type)
        self.store.put_bytes(
            catalog_key(namespace), orjson.dumps(catalog, option=orjson.OPT_INDENT_2), "application/json"
        )
        return catalog


def iso_utc(moment: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
