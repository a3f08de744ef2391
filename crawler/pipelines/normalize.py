"""Normalize and validate records, and stamp every row with its provenance columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from crawler.extensions.services import Services
from crawler.items import Record, arrow_schema
from crawler.pipelines.columnar import ArrowRecords, StampedTable, record_schema

#: rows of a columnar item shown in the dead letter of its rows without a key
_SAMPLE_ROWS = 3


@dataclass(slots=True)
class StampedRecord:
    """A validated record as the row that will be stored (record fields + metadata columns)."""

    record_type: type[Record]
    row: dict[str, Any]

    @property
    def namespace(self) -> str:
        return self.record_type.namespace


class NormalizePipeline:
    """Record -> :class:`StampedRecord`: checks the key and the declared record types, adds
    ``_source``, ``_ingested_at``, ``_run_id`` and ``_schema_version``. Other items pass through."""

    def __init__(self, crawler: Crawler, services: Services) -> None:
        self.crawler = crawler
        self.services = services

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NormalizePipeline:
        services = crawler.get_extension(Services)
        return cls(crawler, services)

    def process_item(self, item: Any) -> Any:
        if isinstance(item, ArrowRecords):
            return self._stamp_table(item)
        if not isinstance(item, Record):
            return item
        spider = self.crawler.spider
        declared = getattr(spider, "records", ())
        if type(item) not in declared:
            return self._reject(item, f"undeclared_record_type: {type(item).__name__} is not in {spider.name}.records")
        if any(getattr(item, field) in (None, "") for field in item.key):
            return self._reject(item, f"missing_key: {', '.join(item.key)}")
        row = item.to_row()
        row["_source"] = getattr(spider, "source", spider.name)
        row["_ingested_at"] = datetime.now(UTC)
        row["_run_id"] = self.services.run_id
        row["_schema_version"] = item.schema_version
        return StampedRecord(type(item), row)

    def _stamp_table(self, item: ArrowRecords) -> StampedTable:
        """The columnar twin of a record's checks: a declared type, its columns cast to the record's
        schema (a column it cannot take is one dead letter for the item), rows without a key dropped
        as one dead letter; then the metadata columns, one value for the whole table."""
        spider = self.crawler.spider
        record_type = item.record_type
        if record_type not in getattr(spider, "records", ()):
            reason = f"undeclared_record_type: {record_type.__name__} is not in {spider.name}.records"
            return self._reject_table(item.table, reason)
        schema = record_schema(record_type)
        try:
            table = item.table.select(schema.names)
        except (KeyError, ValueError, pa.ArrowException) as exc:
            return self._reject_table(item.table, f"invalid_records: {type(exc).__name__}: {str(exc)[:200]}")
        keyed = None
        for column in record_type.key:
            values = table.column(column)
            present = (
                pc.fill_null(pc.greater(pc.binary_length(values), 0), False)
                if pa.types.is_string(values.type)
                else pc.is_valid(values)
            )
            keyed = present if keyed is None else pc.and_(keyed, present)
        missing = table.num_rows - pc.sum(keyed).as_py() if table.num_rows else 0
        if missing:
            self.services.dead_letter(
                f"missing_key: {', '.join(record_type.key)} ({missing} rows of {table.num_rows})",
                payload=str(table.filter(pc.invert(keyed)).slice(0, _SAMPLE_ROWS).to_pylist()),
            )
            self.crawler.stats.inc_value("normalize/rows_without_key", missing)
            table = table.filter(keyed)
        try:
            table = table.cast(schema)
        except (ValueError, TypeError, pa.ArrowException) as exc:
            return self._reject_table(item.table, f"invalid_records: {type(exc).__name__}: {str(exc)[:200]}")
        rows = table.num_rows
        schema = arrow_schema(record_type)
        metadata = {
            "_source": getattr(spider, "source", spider.name),
            "_ingested_at": datetime.now(UTC),
            "_run_id": self.services.run_id,
            "_schema_version": item.record_type.schema_version,
        }
        for name, value in metadata.items():
            field = schema.field(name)
            table = table.append_column(field, pa.repeat(pa.scalar(value, field.type), rows))
        return StampedTable(record_type, table.replace_schema_metadata(schema.metadata))

    def _reject_table(self, table: pa.Table, reason: str) -> None:
        self.services.dead_letter(reason, payload=str(table.slice(0, _SAMPLE_ROWS).to_pylist()))
        raise DropItem(reason)

    def _reject(self, item: Record, reason: str) -> None:
        self.services.dead_letter(reason, payload=item.model_dump_json())
        raise DropItem(reason)
