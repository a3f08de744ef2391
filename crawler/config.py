"""Platform settings parsed once per crawler into a typed, documented object."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from scrapy.settings import BaseSettings


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp and a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class IngestionConfig:
    storage_uri: str
    meta_db_url: str
    batch_max_records: int
    batch_max_bytes: int
    batch_idle_seconds: float
    parquet_compression: str
    dead_letter_sample_bytes: int
    #: RUN_ID when set explicitly; otherwise the crawl's job id or a new id (see Services.run_id)
    run_id: str | None

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> IngestionConfig:
        storage_uri = settings.get("STORAGE_URI") or "./data"
        meta_db_url = settings.get("META_DB_URL") or default_meta_db_url(storage_uri)
        config = cls(
            storage_uri=storage_uri,
            meta_db_url=meta_db_url,
            batch_max_records=settings.getint("BATCH_MAX_RECORDS", 1000),
            batch_max_bytes=settings.getint("BATCH_MAX_BYTES", 10 * 1024 * 1024),
            batch_idle_seconds=settings.getfloat("BATCH_IDLE_SECONDS", 30.0),
            parquet_compression=settings.get("PARQUET_COMPRESSION", "zstd"),
            dead_letter_sample_bytes=settings.getint("DEAD_LETTER_SAMPLE_BYTES", 4096),
            run_id=settings.get("RUN_ID") or os.environ.get("SCRAPY_JOB") or None,
        )
        if config.batch_max_records < 1 or config.batch_max_bytes < 1:
            raise ValueError("BATCH_MAX_RECORDS and BATCH_MAX_BYTES must be positive")
        return config


def default_meta_db_url(storage_uri: str) -> str:
    """SQLite inside the local data folder; beside the working directory when storage is remote."""
    if "://" in storage_uri and not storage_uri.startswith("file://"):
        return "sqlite:///" + str(Path("meta.db").resolve())
    folder = Path(storage_uri.removeprefix("file://"))
    return "sqlite:///" + str((folder / "_meta" / "meta.db").resolve())
