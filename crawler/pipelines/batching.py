"""In-memory batches per (namespace, ingestion day), and when they are due to be written.

Rows (single records) and Arrow tables (columnar items, :mod:`crawler.pipelines.columnar`) batch
separately, each under its own limits: a columnar batch holds many more records (one Parquet file per
thousand rows would make millions of files of a bulk source)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson
import pyarrow as pa

from crawler.items import Record

_NDJSON_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


@dataclass
class Batch:
    """Rows of one namespace ingested on one UTC day, with their NDJSON lines already encoded."""

    record_type: type[Record]
    day: date
    rows: list[dict[str, Any]] = field(default_factory=list)
    lines: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    first_receipt: int = 0
    last_receipt: int = 0
    last_added: float = field(default_factory=time.monotonic)

    def add(self, row: dict[str, Any], receipt: int) -> None:
        line = orjson.dumps(row, option=_NDJSON_OPTIONS)
        if not self.rows:
            self.first_receipt = receipt
        self.rows.append(row)
        self.lines.append(line)
        self.nbytes += len(line)
        self.last_receipt = receipt
        self.last_added = time.monotonic()

    #: Arrow tables of columnar items (a batch holds rows or tables, never both)
    tables: list[pa.Table] = field(default_factory=list)
    records: int = 0

    def add_table(self, table: pa.Table, receipt: int) -> None:
        if not self.tables:
            self.first_receipt = receipt
        self.tables.append(table)
        self.records += table.num_rows
        self.nbytes += table.nbytes
        self.last_receipt = receipt
        self.last_added = time.monotonic()

    @property
    def columnar(self) -> bool:
        return bool(self.tables)

    def table(self) -> pa.Table:
        """The batch's columnar records as one table."""
        return pa.concat_tables(self.tables)

    def __len__(self) -> int:
        return self.records if self.tables else len(self.rows)


class Batcher:
    """Groups rows into batches and says which are due: full by count or bytes, or idle too long."""

    def __init__(
        self,
        max_records: int,
        max_bytes: int,
        idle_seconds: float,
        columnar_max_records: int = 200_000,
        columnar_max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.columnar_max_records = columnar_max_records
        self.columnar_max_bytes = columnar_max_bytes
        #: (namespace, day) -> the open batch of rows, and of columnar items
        self.open: dict[tuple[str, date], Batch] = {}
        self.open_tables: dict[tuple[str, date], Batch] = {}

    def add(self, record_type: type[Record], row: dict[str, Any], receipt: int) -> Batch | None:
        """Add a row; returns the batch, removed from the open set, when it is full."""
        day = row["_ingested_at"].date()
        key = (record_type.namespace, day)
        batch = self.open.get(key)
        if batch is None:
            batch = self.open[key] = Batch(record_type, day)
        batch.add(row, receipt)
        if len(batch) >= self.max_records or batch.nbytes >= self.max_bytes:
            return self.open.pop(key)
        return None

    def add_table(self, record_type: type[Record], table: pa.Table, day: date, receipt: int) -> list[Batch]:
        """Add a stamped table (every row ingested on ``day``); returns the batches it filled, removed
        from the open set. A table larger than a batch is cut: no batch exceeds the record limit."""
        key = (record_type.namespace, day)
        full: list[Batch] = []
        offset = 0
        while offset < table.num_rows:
            batch = self.open_tables.get(key)
            if batch is None:
                batch = self.open_tables[key] = Batch(record_type, day)
            room = self.columnar_max_records - batch.records
            part = table.slice(offset, room)
            offset += part.num_rows
            batch.add_table(part, receipt)
            if batch.records >= self.columnar_max_records or batch.nbytes >= self.columnar_max_bytes:
                full.append(self.open_tables.pop(key))
        return full

    def take_idle(self, now: float | None = None) -> list[Batch]:
        now = time.monotonic() if now is None else now
        taken = []
        for open_batches in (self.open, self.open_tables):
            idle = [key for key, batch in open_batches.items() if now - batch.last_added >= self.idle_seconds]
            taken += [open_batches.pop(key) for key in idle]
        return taken

    def take_all(self) -> list[Batch]:
        batches = [*self.open.values(), *self.open_tables.values()]
        self.open.clear()
        self.open_tables.clear()
        return batches

    def __bool__(self) -> bool:
        """Whether any batch is open."""
        return bool(self.open or self.open_tables)

    def oldest_receipt(self) -> int | None:
        batches = [*self.open.values(), *self.open_tables.values()]
        return min((batch.first_receipt for batch in batches), default=None)
