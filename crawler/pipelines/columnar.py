"""Columnar items: many records of one type as one Arrow table, for bulk sources.

Hundreds of millions of records cannot go through Scrapy's item path one dict at a time. A spider yields
:class:`ArrowRecords` instead (its table holds the record type's columns, see
:func:`crawler.items.arrow_schema`); the normalize pipeline checks and stamps it into a
:class:`StampedTable`, and the store pipeline batches, writes and indexes it under the same rules as
single records (per namespace and ingestion day, flushed by count, bytes or idleness, the cursors saved
only after what came before is stored). A columnar item counts as its rows in ``item_scraped_count``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from crawler.items import Record, arrow_schema
from crawler.items.base import METADATA_FIELDS

__all__ = ["ArrowRecords", "StampedTable", "record_schema"]


@dataclass(frozen=True, slots=True)
class ArrowRecords:
    """Records of ``record_type`` as the columns of ``table`` (the metadata columns are added later)."""

    record_type: type[Record]
    table: pa.Table

    def __len__(self) -> int:
        return self.table.num_rows


@dataclass(frozen=True, slots=True)
class StampedTable:
    """Checked records with their metadata columns, in the namespace's Parquet schema."""

    record_type: type[Record]
    table: pa.Table

    @property
    def namespace(self) -> str:
        return self.record_type.namespace

    def __len__(self) -> int:
        return self.table.num_rows


def record_schema(record_type: type[Record]) -> pa.Schema:
    """The Arrow schema of a record type's own columns (without the metadata columns)."""
    schema = arrow_schema(record_type)
    return pa.schema([field for field in schema if field.name not in METADATA_FIELDS], metadata=schema.metadata)
