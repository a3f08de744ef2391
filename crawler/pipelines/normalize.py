"""Normalize and validate records, and stamp every row with its provenance columns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem

from crawler.extensions.services import Services
from crawler.items import Record


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

    def _reject(self, item: Record, reason: str) -> None:
        self.services.dead_letter(reason, payload=item.model_dump_json())
        raise DropItem(reason)
