"""In-memory batches per (namespace, ingestion day), and when they are due to be written."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import orjson

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

    def __len__(self) -> int:
        return len(self.rows)


class Batcher:
    """Groups rows into batches and says which are due: full by count or bytes, or idle too long."""

    def __init__(self, max_records: int, max_bytes: int, idle_seconds: float) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.open: dict[tuple[str, date], Batch] = {}

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

    def take_idle(self, now: float | None = None) -> list[Batch]:
        now = time.monotonic() if now is None else now
        idle = [key for key, batch in self.open.items() if now - batch.last_added >= self.idle_seconds]
        return [self.open.pop(key) for key in idle]

    def take_all(self) -> list[Batch]:
        batches = list(self.open.values())
        self.open.clear()
        return batches

    def oldest_receipt(self) -> int | None:
        return min((batch.first_receipt for batch in self.open.values()), default=None)
