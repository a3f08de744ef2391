"""Index stored objects: a row per object in ``r2_partitions`` and the namespace's ``catalog.json``."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import orjson

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.writer import StoredObject
from crawler.storage import ObjectStore
from crawler.storage.layout import catalog_key, partition_name

__all__ = ["PartitionIndex", "catalog_key", "iso_utc"]


class PartitionIndex:
    """Blocking; called from the ordered metadata thread so catalog rewrites never interleave."""

    def __init__(self, store: ObjectStore, meta: MetaDB) -> None:
        self.store = store
        self.meta = meta

    def record(self, objects: list[StoredObject], run_id: str) -> None:
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
            self.write_catalog(namespace)

    def write_catalog(self, namespace: str) -> dict[str, Any]:
        """Rewrite ``<namespace>/_metadata/catalog.json`` from the partition table (its source of truth).

        Under the metadata DB's lock: a worker that reads the table later also writes later, so the catalog
        left behind by concurrent workers (distributed crawls, shards) lists every partition."""
        with self.meta.exclusive(f"catalog:{namespace}"):
            return self._write_catalog(namespace)

    def _write_catalog(self, namespace: str) -> dict[str, Any]:
        rows = self.meta.partitions(namespace)
        record_type = Record.registry[namespace]
        partitions: dict[str, dict[str, Any]] = defaultdict(lambda: {"files": [], "rows": 0, "bytes": 0})
        for row in rows:
            part = partitions[partition_name(date(row.year, row.month, row.day))]
            part["files"].append({"key": row.object_key, "format": row.format, "rows": row.records, "bytes": row.bytes})
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
        self.store.put_bytes(
            catalog_key(namespace), orjson.dumps(catalog, option=orjson.OPT_INDENT_2), "application/json"
        )
        return catalog


def iso_utc(moment: datetime) -> str:
    """An aware datetime as ISO-8601 UTC with microseconds and ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
