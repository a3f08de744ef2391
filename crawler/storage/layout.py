"""The object-key layout (DESIGN §2): the one module that knows how stored objects are named.

::

    <namespace>/year=YYYY/month=MM/day=DD/batch_<unix-ts>_<id>.ndjson      a batch, as written by a crawl
    <namespace>/year=YYYY/month=MM/day=DD/batch_<unix-ts>_<id>.parquet     its Parquet twin
    <namespace>/year=YYYY/month=MM/day=DD/compacted_<unix-ts>_<id>.parquet written by ``scrapy compact``
    <namespace>/_metadata/catalog.json                                     the namespace's catalog
    <namespace>/_metadata/iceberg/…                                        its Iceberg table's metadata

The date is the UTC ingestion date; ``year``, ``month`` and ``day`` are Hive partition columns. A
namespace may hold ``/`` (``<source>/<kind>``). Everything else builds and parses keys with the functions
here, so the template is written once.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from datetime import date

__all__ = [
    "COMPACTED_TEMPLATE",
    "FORMATS",
    "KINDS",
    "PARTITION_COLUMNS",
    "TEMPLATE",
    "DataKey",
    "batch_keys",
    "catalog_key",
    "compacted_key",
    "iceberg_metadata_prefix",
    "is_data_key",
    "namespace_prefix",
    "new_object_id",
    "parse_key",
    "partition_day",
    "partition_name",
    "partition_prefix",
]

#: Hive partition columns, in path order.
PARTITION_COLUMNS = ("year", "month", "day")
#: file kinds: raw batches of a crawl, and the merged files of a compaction
KINDS = ("batch", "compacted")
FORMATS = ("ndjson", "parquet")
#: the templates, for documentation
TEMPLATE = "<namespace>/year=YYYY/month=MM/day=DD/batch_<unix-ts>_<id>.{ndjson,parquet}"
COMPACTED_TEMPLATE = "compacted_<unix-ts>_<id>.parquet"

_KEY = re.compile(
    r"^(?P<namespace>[^=]+?)/year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})/"
    r"(?P<stem>[^/]+)\.(?P<format>ndjson|parquet)$"
)
_PARTITION = re.compile(r"^year=(?P<year>\d{4})/month=(?P<month>\d{2})/day=(?P<day>\d{2})$")
_STEM = re.compile(r"^(?P<kind>batch|compacted)_(?P<ts>\d+)_(?P<id>[0-9A-Za-z]+)$")


@dataclass(frozen=True, slots=True)
class DataKey:
    """A parsed data-object key. ``stem`` is the file name without its format suffix."""

    namespace: str
    day: date
    stem: str
    format: str  # "ndjson" | "parquet"

    @property
    def key(self) -> str:
        return f"{partition_prefix(self.namespace, self.day)}{self.stem}.{self.format}"

    @property
    def kind(self) -> str:
        """``batch`` or ``compacted``; ``other`` for a file in a partition not named by this platform."""
        match = _STEM.match(self.stem)
        return match["kind"] if match else "other"


def new_object_id() -> str:
    """A random id for a new object name (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def partition_name(day: date) -> str:
    """``year=YYYY/month=MM/day=DD``: a day partition, relative to its namespace (the catalog's keys)."""
    return f"year={day.year:04d}/month={day.month:02d}/day={day.day:02d}"


def partition_day(name: str) -> date | None:
    """The day of a partition name (:func:`partition_name`'s inverse); None for any other name."""
    match = _PARTITION.match(name)
    if match is None:
        return None
    try:
        return date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None


def partition_prefix(namespace: str, day: date) -> str:
    """``<namespace>/year=YYYY/month=MM/day=DD/``: the listing prefix of one day partition."""
    return f"{namespace}/{partition_name(day)}/"


def namespace_prefix(namespace: str) -> str:
    """The listing prefix of every data object of a namespace (its catalog excluded)."""
    return f"{namespace}/year="


def batch_keys(
    namespace: str, day: date, *, unix_ts: int | None = None, object_id: str | None = None
) -> tuple[str, str]:
    """The keys of a new batch: its Parquet file and its NDJSON twin (one name, two suffixes).

    ``unix_ts`` defaults to now, ``object_id`` to a new random id."""
    stem = _stem("batch", unix_ts, object_id)
    return DataKey(namespace, day, stem, "parquet").key, DataKey(namespace, day, stem, "ndjson").key


def compacted_key(namespace: str, day: date, *, unix_ts: int | None = None, object_id: str | None = None) -> str:
    """The key of a new compacted Parquet file of a day partition."""
    return DataKey(namespace, day, _stem("compacted", unix_ts, object_id), "parquet").key


def _stem(kind: str, unix_ts: int | None, object_id: str | None) -> str:
    return f"{kind}_{int(time.time()) if unix_ts is None else unix_ts}_{object_id or new_object_id()}"


def catalog_key(namespace: str) -> str:
    return f"{namespace}/_metadata/catalog.json"


def iceberg_metadata_prefix(namespace: str) -> str:
    """Where the namespace's Iceberg table keeps its metadata (JSON, manifests): beside its catalog."""
    return f"{namespace}/_metadata/iceberg/"


def parse_key(key: str) -> DataKey | None:
    """The parts of a data-object key (a file in a day partition); ``None`` for any other key (catalogs,
    zone files, temporary names)."""
    match = _KEY.match(key)
    if match is None:
        return None
    try:
        day = date(int(match["year"]), int(match["month"]), int(match["day"]))
    except ValueError:
        return None
    return DataKey(match["namespace"], day, match["stem"], match["format"])


def is_data_key(key: str, namespace: str | None = None, fmt: str | None = None) -> bool:
    """Whether ``key`` is a data object (of ``namespace``, in format ``fmt``, when given)."""
    parsed = parse_key(key)
    return (
        parsed is not None
        and (namespace is None or parsed.namespace == namespace)
        and (fmt is None or parsed.format == fmt)
    )
