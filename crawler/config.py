"""Platform settings parsed once per crawler into a typed, documented object.

Every setting is read with one of the typed helpers below (``get_int``, ``get_positive_int``, ``get_float``,
``get_positive_float``, ``get_bool``, ``get_choice``): a value of the wrong type raises :class:`SettingError`,
one message naming the setting, the expected type and the value given, e.g.
``BATCH_MAX_RECORDS: expected a positive integer, got 'abc'``, rather than Scrapy's ``getint()`` raising a
bare ``ValueError``. A value that is unset (``None``) or empty falls back to the default, as an empty
environment variable does in ``crawler/settings.py``.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from scrapy.exceptions import UsageError
from scrapy.settings import BaseSettings

from crawler.meta.db import MIN_PAYLOAD_LIMIT

#: the Parquet codecs pyarrow writes
PARQUET_CODECS = ("zstd", "snappy", "gzip", "brotli", "lz4", "lz4_raw", "none")


class SettingError(UsageError):
    """A setting's value is not of the expected type. A ``UsageError``: a command reports it as one line
    (``scrapy <command>: error: …``) and exits with status 2."""

    def __init__(self, name: str, expected: str, value: Any) -> None:
        self.name = name
        self.expected = expected
        self.value = value
        super().__init__(f"{name}: expected {expected}, got {value!r}", print_help=False)


def _raw(settings: BaseSettings, name: str) -> Any:
    value = settings.get(name)
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    return value


def _bounds(noun: str, minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f"{noun} between {minimum} and {maximum}"
    if minimum is not None:
        return f"{noun} >= {minimum}"
    if maximum is not None:
        return f"{noun} <= {maximum}"
    return noun


def get_int(
    settings: BaseSettings, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``name`` as an integer (an ``int``, or a string of one), within ``minimum``..``maximum`` (inclusive)."""
    expected = _bounds("an integer", minimum, maximum)
    value = _raw(settings, name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise SettingError(name, expected, value)
    try:
        number = int(value)
    except ValueError:
        raise SettingError(name, expected, value) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise SettingError(name, expected, value)
    return number


def get_positive_int(settings: BaseSettings, name: str, default: int) -> int:
    """``name`` as an integer >= 1."""
    try:
        return get_int(settings, name, default, minimum=1)
    except SettingError as exc:
        raise SettingError(name, "a positive integer", exc.value) from None


def get_float(
    settings: BaseSettings,
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """``name`` as a finite number (an ``int``, a ``float`` or a string of one), within ``minimum``..``maximum``
    (inclusive)."""
    expected = _bounds("a number", minimum, maximum)
    value = _raw(settings, name)
    if value is None:
        return float(default)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SettingError(name, expected, value)
    try:
        number = float(value)
    except ValueError:
        raise SettingError(name, expected, value) from None
    if not math.isfinite(number):
        raise SettingError(name, expected, value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise SettingError(name, expected, value)
    return number


def get_positive_float(settings: BaseSettings, name: str, default: float) -> float:
    """``name`` as a finite number > 0."""
    number = get_float(settings, name, default)
    if number <= 0:
        raise SettingError(name, "a positive number", settings.get(name))
    return number


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def get_bool(settings: BaseSettings, name: str, default: bool) -> bool:
    """``name`` as a boolean: ``True``/``False``, ``1``/``0``, or (any case) ``true``/``false``, ``yes``/``no``,
    ``on``/``off``, ``1``/``0``."""
    value = _raw(settings, name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
    raise SettingError(name, "true or false", value)


def get_choice(settings: BaseSettings, name: str, default: str, choices: Iterable[str]) -> str:
    """``name`` as one of ``choices``, compared without case; returns the choice as listed."""
    choices = tuple(choices)
    value = _raw(settings, name)
    if value is None:
        return default
    if isinstance(value, str):
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
    raise SettingError(name, "one of " + ", ".join(repr(choice) for choice in choices), value)


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp and a random suffix."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class IcebergConfig:
    """Where the Iceberg tables of the namespaces are catalogued (see :mod:`crawler.storage.iceberg`)."""

    enabled: bool
    #: a SQLAlchemy URL (SQL catalog) or an ``http(s)://`` Iceberg REST endpoint
    catalog_uri: str
    catalog_name: str = "crawler"
    #: the Iceberg namespace the tables are in
    namespace: str = "crawler"
    #: REST: the warehouse (R2 Data Catalog: ``<account id>_<bucket>``); SQL: the default table location
    warehouse: str | None = None
    #: REST: the bearer token (a secret: never logged)
    token: str | None = field(default=None, repr=False)
    #: ``scrapy compact`` expires snapshots older than this
    snapshot_retention: timedelta = timedelta(days=7)
    #: the write path keeps at most this many snapshots per table (a commit per batch would otherwise grow
    #: the table's metadata, which every commit copies, without bound)
    snapshots_kept: int = 10

    def catalog_fields(self) -> dict[str, str | None]:
        """What opens the catalog, as JSON (a query worker's init frame)."""
        return {
            "catalog_uri": self.catalog_uri,
            "catalog_name": self.catalog_name,
            "namespace": self.namespace,
            "warehouse": self.warehouse,
            "token": self.token,
        }

    @classmethod
    def from_settings(cls, settings: BaseSettings, meta_db_url: str) -> IcebergConfig:
        """``ICEBERG_*`` settings; the catalog defaults to a SQL catalog in the metadata DB."""
        return cls(
            enabled=get_bool(settings, "ICEBERG_ENABLED", True),
            catalog_uri=_raw(settings, "ICEBERG_CATALOG_URI") or meta_db_url,
            catalog_name=_raw(settings, "ICEBERG_CATALOG_NAME") or "crawler",
            namespace=_raw(settings, "ICEBERG_NAMESPACE") or "crawler",
            warehouse=_raw(settings, "ICEBERG_WAREHOUSE"),
            # a secret: from -s or the environment, never from a settings module (Scrapy logs those)
            token=_raw(settings, "ICEBERG_TOKEN") or os.environ.get("ICEBERG_TOKEN") or None,
            snapshot_retention=timedelta(
                hours=get_float(settings, "ICEBERG_SNAPSHOT_RETENTION_HOURS", 168.0, minimum=0)
            ),
            snapshots_kept=get_positive_int(settings, "ICEBERG_SNAPSHOTS_KEPT", 10),
        )


@dataclass(frozen=True)
class IngestionConfig:
    storage_uri: str
    meta_db_url: str
    batch_max_records: int
    batch_max_bytes: int
    batch_idle_seconds: float
    parquet_compression: str
    dead_letter_sample_bytes: int
    #: how long a batch is retried against a failing store (object store or metadata DB) before it is given up
    store_retry_seconds: float
    meta_db_retry_seconds: float
    meta_db_timeout: float
    s3_connect_timeout: float
    s3_read_timeout: float
    #: RUN_ID when set explicitly; otherwise the crawl's job id or a new id (see Services.run_id)
    run_id: str | None
    #: the limits of a batch of columnar items (bulk sources, crawler/pipelines/columnar.py)
    columnar_batch_max_records: int = 200_000
    columnar_batch_max_bytes: int = 64 * 1024 * 1024
    #: the Iceberg tables kept in step with the stored files (``None``: ICEBERG_ENABLED is off)
    iceberg: IcebergConfig | None = None

    @classmethod
    def from_settings(cls, settings: BaseSettings) -> IngestionConfig:
        """Parse and check the platform's settings; raises :class:`SettingError` on a bad value."""
        storage_uri = settings.get("STORAGE_URI") or "./data"
        meta_db_url = settings.get("META_DB_URL") or default_meta_db_url(storage_uri)
        iceberg = IcebergConfig.from_settings(settings, meta_db_url)
        return cls(
            storage_uri=storage_uri,
            meta_db_url=meta_db_url,
            batch_max_records=get_positive_int(settings, "BATCH_MAX_RECORDS", 1000),
            batch_max_bytes=get_positive_int(settings, "BATCH_MAX_BYTES", 10 * 1024 * 1024),
            batch_idle_seconds=get_float(settings, "BATCH_IDLE_SECONDS", 30.0, minimum=0),
            parquet_compression=get_choice(settings, "PARQUET_COMPRESSION", "zstd", PARQUET_CODECS),
            dead_letter_sample_bytes=get_int(settings, "DEAD_LETTER_SAMPLE_BYTES", 4096, minimum=MIN_PAYLOAD_LIMIT),
            store_retry_seconds=get_float(settings, "STORE_RETRY_SECONDS", 300.0, minimum=0),
            meta_db_retry_seconds=get_float(settings, "META_DB_RETRY_SECONDS", 300.0, minimum=0),
            meta_db_timeout=get_positive_float(settings, "META_DB_TIMEOUT", 60.0),
            s3_connect_timeout=get_positive_float(settings, "S3_CONNECT_TIMEOUT", 60.0),
            s3_read_timeout=get_positive_float(settings, "S3_READ_TIMEOUT", 60.0),
            run_id=settings.get("RUN_ID") or os.environ.get("SCRAPY_JOB") or None,
            columnar_batch_max_records=get_positive_int(settings, "COLUMNAR_BATCH_MAX_RECORDS", 200_000),
            columnar_batch_max_bytes=get_positive_int(settings, "COLUMNAR_BATCH_MAX_BYTES", 64 * 1024 * 1024),
            iceberg=iceberg if iceberg.enabled else None,
        )


def default_meta_db_url(storage_uri: str) -> str:
    """SQLite inside the local data folder; beside the working directory when storage is remote."""
    if "://" in storage_uri and not storage_uri.startswith("file://"):
        return "sqlite:///" + str(Path("meta.db").resolve())
    folder = Path(storage_uri.removeprefix("file://"))
    return "sqlite:///" + str((folder / "_meta" / "meta.db").resolve())
