"""DuckDB over the stored layout: per namespace, ``<table>`` (latest record per key) and
``<table>_history`` (every stored record), with the Hive partition columns ``year``, ``month``, ``day``.

**Which files.** The views read the files named by the namespace's partition index, not a listing of
the store: ``r2_partitions`` when a metadata DB handle is given, else ``<namespace>/_metadata/catalog.json``
(rewritten from ``r2_partitions`` after every write and every compaction step, and kept in the store, so
every process that can read the store has it). A namespace whose catalog is missing (a store written
before catalogs existed, or copied without them) is listed instead.

**Which columns.** The record type is the schema: every file's columns are matched to it by name. Files
of the current ``schema_version`` are read as they are; older ones are projected onto the current
schema, a column they lack reading as NULL. Files of unknown version (listed, or indexed before versions
were) are read with ``union_by_name``.

**Which rows.** The index also keeps, per file, the range of its first key column. For the latest-per-key
view, files are grouped into at most :data:`MAX_BRANCHES` groups of close ranges, each read with
``WHERE key BETWEEN lo AND hi``, so a filter on the key prunes whole groups of files at planning time,
before any file is opened. (The ``_history`` view reads each schema version's files in one scan: a
full scan pays nothing for the ranges.)

**The latest record of a key** is the first by :func:`latest_order`: the source's own version
(``Record.version_column``) when the record type declares one, then ``_ingested_at``, then ``_run_id``.

**From the Iceberg tables** (``tables`` given: ``scrapy query --iceberg``, ``QUERY_ICEBERG``): the files are
those of each table's current snapshot, planned by PyIceberg (a consistent set, whatever commits are under
way), with each file's schema version and key range read from the table's column statistics; the views are
the same. A table holding files the platform did not write (another engine's, or delete files) is scanned by
PyIceberg into Arrow instead.

Local folders are read with DuckDB's own ``read_parquet``; S3/R2 through pyarrow's S3 filesystem
registered as datasets (DuckDB's httpfs extension cannot be installed offline; see the README).
"""

from __future__ import annotations

import itertools
import logging
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import orjson
import pyarrow as pa
import pyarrow.dataset as ds

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB
from crawler.storage import ObjectStore
from crawler.storage.layout import PARTITION_COLUMNS, catalog_key, is_data_key, namespace_prefix

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

__all__ = [
    "MAX_BRANCHES",
    "PARTITION_COLUMNS",
    "DataFile",
    "NamespaceIndex",
    "connect",
    "iceberg_index",
    "latest_order",
    "parquet_keys",
    "read_index",
    "read_indexes",
    "register_namespace",
]

logger = logging.getLogger(__name__)

#: the most ``read_parquet`` groups (UNION ALL branches) of one view
MAX_BRANCHES = 32
_PARTITION_TYPES = "{" + ", ".join(f"'{c}': 'BIGINT'" for c in PARTITION_COLUMNS) + "}"
_PARTITION_SCHEMA = pa.schema([(c, pa.int64()) for c in PARTITION_COLUMNS])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_literal(value: Any) -> str:
    if isinstance(value, str):
        return _sql_string(value)
    return str(int(value))


# -- the partition index ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataFile:
    """One Parquet file of a namespace as the index knows it."""

    key: str
    #: the record type's ``schema_version`` the file was written with; ``None`` when unknown
    schema_version: int | None = None
    #: (min, max) of the first primary-key column in the file, when known
    key_range: tuple[Any, Any] | None = None
    #: no key occurs twice in the file (a batch without repeats, a compacted file)
    keys_unique: bool = False


@dataclass(frozen=True)
class NamespaceIndex:
    """The Parquet files of a namespace; ``source`` says where the list came from."""

    record_type: type[Record]
    files: tuple[DataFile, ...]
    source: str  # "meta" | "catalog" | "listing" | "iceberg"
    #: the rows themselves, when an Iceberg table was scanned into Arrow (it holds files the views cannot
    #: read by key); ``files`` is then empty
    rows: pa.Table | None = None


def _key_range(entry: dict[str, Any]) -> tuple[Any, Any] | None:
    low, high = entry.get("pk_min"), entry.get("pk_max")
    if low is None or high is None or type(low) is not type(high) or type(low) not in (str, int):
        return None
    return low, high


def read_index(store: ObjectStore, record_type: type[Record], meta: MetaDB | None = None) -> NamespaceIndex:
    """The Parquet files of a namespace: from ``r2_partitions`` (when ``meta`` is given and knows the
    namespace), else from its ``catalog.json``, else (no catalog at all) from a listing of the store."""
    namespace = record_type.namespace
    if meta is not None:
        rows = meta.partitions(namespace)
        if rows:
            files = tuple(DataFile(r.object_key, r.schema_version) for r in rows if r.format == "parquet")
            return NamespaceIndex(record_type, files, "meta")
    try:
        catalog = orjson.loads(store.get_bytes(catalog_key(namespace)))
    except KeyError:
        catalog = None
    except orjson.JSONDecodeError:
        logger.warning("the catalog of %s is not valid JSON: listing the store instead", namespace)
        catalog = None
    if isinstance(catalog, dict) and isinstance(catalog.get("partitions"), dict):
        files = tuple(
            DataFile(entry["key"], entry.get("schema_version"), _key_range(entry), entry.get("pk_unique") is True)
            for partition in catalog["partitions"].values()
            for entry in partition.get("files", ())
            if entry.get("format") == "parquet"
        )
        return NamespaceIndex(record_type, files, "catalog")
    keys = [o.key for o in store.list(namespace_prefix(namespace)) if is_data_key(o.key, namespace, "parquet")]
    if keys:
        logger.info("%s has no catalog: its %d Parquet files were listed", namespace, len(keys))
    return NamespaceIndex(record_type, tuple(DataFile(key) for key in keys), "listing")


def read_indexes(
    store: ObjectStore, meta: MetaDB | None = None, tables: IcebergTables | None = None
) -> dict[str, NamespaceIndex]:
    """:func:`read_index` of every registered namespace (:func:`iceberg_index` with ``tables``)."""
    if tables is not None:
        return {namespace: iceberg_index(tables, rt) for namespace, rt in sorted(Record.registry.items())}
    return {namespace: read_index(store, rt, meta) for namespace, rt in sorted(Record.registry.items())}


def iceberg_index(tables: IcebergTables, record_type: type[Record]) -> NamespaceIndex:
    """The Parquet files of a namespace's Iceberg table at its current snapshot, planned by PyIceberg.

    Each file's schema version and first-key range come from the table's column statistics (lower and
    upper bounds: a truncated string bound still bounds). A table with a file outside the store or a
    delete file (another engine's writes) is scanned into Arrow as a whole instead."""
    from pyiceberg.conversions import from_bytes

    table = tables.table(record_type, create=False)
    if table is None:
        return NamespaceIndex(record_type, (), "iceberg")
    table.refresh()
    tasks = list(table.scan().plan_files())
    keys = [tables.key(task.file.file_path) for task in tasks]
    foreign = any(key is None or not is_data_key(key, record_type.namespace, "parquet") for key in keys)
    if foreign or any(task.delete_files for task in tasks):
        return NamespaceIndex(record_type, (), "iceberg", rows=table.scan().to_arrow())
    schema = table.schema()
    version_field = schema.find_field("_schema_version")
    key_field = schema.find_field(record_type.key[0])

    def bounds(data_file: Any, field: Any) -> tuple[Any, Any] | None:
        low = (data_file.lower_bounds or {}).get(field.field_id)
        high = (data_file.upper_bounds or {}).get(field.field_id)
        if low is None or high is None:
            return None
        return from_bytes(field.field_type, low), from_bytes(field.field_type, high)

    files = []
    for key, task in zip(keys, tasks, strict=True):
        versions = bounds(task.file, version_field)
        version = versions[0] if versions is not None and versions[0] == versions[1] else None
        key_range = bounds(task.file, key_field)
        if key_range is not None and type(key_range[0]) not in (str, int):
            key_range = None
        files.append(DataFile(key, version, key_range))
    return NamespaceIndex(record_type, tuple(files), "iceberg")


def parquet_keys(store: ObjectStore, namespace: str, meta: MetaDB | None = None) -> list[str]:
    """The Parquet files the views of ``namespace`` read."""
    return [f.key for f in read_index(store, Record.registry[namespace], meta).files]


# -- the views -------------------------------------------------------------------------------------


def latest_order(record_type: type[Record]) -> str:
    """The ORDER BY list that puts the latest record of a key first (views and compaction alike)."""
    order = ["_ingested_at DESC", "_run_id DESC"]
    if record_type.version_column is not None:
        order.insert(0, f"{_quote(record_type.version_column)} DESC NULLS LAST")
    return ", ".join(order)


def connect(
    store: ObjectStore,
    meta: MetaDB | None = None,
    *,
    indexes: dict[str, NamespaceIndex] | None = None,
    tables: IcebergTables | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the views of every namespace.

    The file lists come from ``indexes`` when given, else from :func:`read_indexes` (the Iceberg
    ``tables``, ``meta``, the catalogs, or a listing). Parquet metadata is cached for the life of the
    connection: keep it for several queries rather than opening one per query."""
    con = duckdb.connect(":memory:")
    con.execute("SET parquet_metadata_cache = true")
    indexes = read_indexes(store, meta, tables) if indexes is None else indexes
    for record_type in Record.registry.values():
        register_namespace(con, store, record_type, indexes.get(record_type.namespace))
    return con


def register_namespace(
    con: duckdb.DuckDBPyConnection,
    store: ObjectStore,
    record_type: type[Record],
    index: NamespaceIndex | None = None,
) -> None:
    index = read_index(store, record_type) if index is None else index
    table = record_type.table
    target = _target_columns(con, record_type)
    distinct_source = ""
    if index.rows is not None:
        history = latest_source = _arrow_select(con, record_type, target, index.rows)
    elif not index.files:
        columns = ", ".join(f"CAST(NULL AS {sql_type}) AS {_quote(name)}" for name, sql_type in target)
        history = latest_source = f"SELECT {columns} WHERE false"
    else:
        scans = _Scans(con, store, record_type, target)
        versions = _by_version(index.files)
        # every record: one scan per schema version
        history = "\nUNION ALL ".join(scans.select(version, files, None) for version, files in versions)
        # the latest: files grouped by key range, so that a filter on the key skips groups
        groups = [(version, *group) for version, files in versions for group in _group(files)]
        distinct = _distinct_groups([(files, key_range) for _, files, key_range in groups])
        latest_source = "\nUNION ALL ".join(
            scans.select(version, files, key_range)
            for n, (version, files, key_range) in enumerate(groups)
            if n not in distinct
        )
        distinct_source = "\nUNION ALL ".join(
            scans.select(version, files, key_range)
            for n, (version, files, key_range) in enumerate(groups)
            if n in distinct
        )
    con.execute(f"CREATE OR REPLACE VIEW {_quote(table + '_history')} AS {history}")
    key = ", ".join(_quote(column) for column in record_type.key)
    # Written so that DuckDB pushes a filter on the key below the window, into the scans.
    latest = (
        f"SELECT * FROM ({latest_source}) "
        f"QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY {latest_order(record_type)}) = 1"
        if latest_source
        else ""
    )
    if index.files and distinct_source:
        # groups whose keys occur nowhere else and once in them: every row is the latest of its key
        latest = f"SELECT * FROM ({distinct_source})" + (f"\nUNION ALL ({latest})" if latest else "")
    con.execute(f"CREATE OR REPLACE VIEW {_quote(table)} AS {latest}")


def _arrow_select(
    con: duckdb.DuckDBPyConnection, record_type: type[Record], target: list[tuple[str, str]], rows: pa.Table
) -> str:
    """A ``SELECT`` of rows scanned into Arrow, projected onto the target columns (the partition columns
    from ``_ingested_at``, as the key layout derives them)."""
    name = f"_{record_type.table}_iceberg"
    con.register(name, rows)
    present = set(rows.column_names)
    columns = []
    for column, sql_type in target:
        if column in PARTITION_COLUMNS:
            columns.append(f"CAST({column}(_ingested_at AT TIME ZONE 'UTC') AS BIGINT) AS {_quote(column)}")
        elif column in present:
            columns.append(f"CAST({_quote(column)} AS {sql_type}) AS {_quote(column)}")
        else:
            columns.append(f"CAST(NULL AS {sql_type}) AS {_quote(column)}")
    return f"SELECT {', '.join(columns)} FROM {_quote(name)}"


def _target_columns(con: duckdb.DuckDBPyConnection, record_type: type[Record]) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the record type's columns, then the partition columns."""
    schema = arrow_schema(record_type)
    for field in _PARTITION_SCHEMA:
        schema = schema.append(field)
    relation = con.from_arrow(schema.empty_table())
    return [(name, str(sql_type)) for name, sql_type in zip(relation.columns, relation.types, strict=True)]


def _by_version(files: Iterable[DataFile]) -> list[tuple[int | None, list[DataFile]]]:
    groups: dict[int | None, list[DataFile]] = defaultdict(list)
    for file in files:
        groups[file.schema_version].append(file)
    return sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0))


Range = tuple[Any, Any]


def _group(files: Sequence[DataFile]) -> list[tuple[list[DataFile], Range | None]]:
    """Files in groups of close key ranges, each with the range that covers it (``None``: unknown).

    Files whose range spans many others' ("wide": re-fetches in no particular order) are grouped
    apart from the "narrow" ones (runs in key order), so that a narrow group's range stays narrow."""
    ranged = [(f, f.key_range) for f in files if f.key_range is not None]
    if not ranged or len({type(bounds[0]) for _, bounds in ranged}) != 1:
        return [(list(files), None)]
    size = max(1, -(-len(files) // MAX_BRANCHES))
    lows = sorted(low for _, (low, _) in ranged)
    narrow: list[tuple[DataFile, Range]] = []
    wide: list[tuple[DataFile, Range]] = []
    for file, (low, high) in ranged:
        (wide if _count_between(lows, low, high) > size else narrow).append((file, (low, high)))
    groups: list[tuple[list[DataFile], Range | None]] = []
    for part in (narrow, wide):
        part.sort(key=lambda item: item[1])
        for start in range(0, len(part), size):
            chunk = part[start : start + size]
            low = min(bounds[0] for _, bounds in chunk)
            high = max(bounds[1] for _, bounds in chunk)
            groups.append(([file for file, _ in chunk], (low, high)))
    unranged = [f for f in files if f.key_range is None]
    if unranged:
        groups.append((unranged, None))
    return groups


def _distinct_groups(groups: list[tuple[list[DataFile], Range | None]]) -> set[int]:
    """The groups whose rows need no de-duplication: every file's keys are unique, the files' ranges
    are disjoint, and the group's range overlaps no other group's (a group of unknown range overlaps all)."""
    ranges = [key_range for _, key_range in groups if key_range is not None]
    if len(ranges) < len(groups) or len({type(low) for low, _ in ranges}) != 1:
        return set()
    distinct = set()
    for n, (files, (low, high)) in enumerate(zip((g[0] for g in groups), ranges, strict=True)):
        inside = sorted(f.key_range for f in files if f.key_range is not None)
        if len(inside) < len(files) or not all(f.keys_unique for f in files):
            continue
        if any(before[1] >= after[0] for before, after in itertools.pairwise(inside)):
            continue
        if all(other[1] < low or other[0] > high for m, other in enumerate(ranges) if m != n):
            distinct.add(n)
    return distinct


def _count_between(sorted_values: list[Any], low: Any, high: Any) -> int:
    return bisect_right(sorted_values, high) - bisect_left(sorted_values, low)


class _Scans:
    """``SELECT``s of groups of a namespace's files, projected onto the record type's columns."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        store: ObjectStore,
        record_type: type[Record],
        target: list[tuple[str, str]],
    ) -> None:
        self.con = con
        self.store = store
        self.record_type = record_type
        self.target = target
        self.columns_of_version: dict[int, dict[str, str]] = {}
        self.datasets = 0

    def select(self, version: int | None, files: list[DataFile], key_range: tuple[Any, Any] | None) -> str:
        scan, present = self._scan(version, files)
        columns = []
        for column, sql_type in self.target:
            if present is None or column in PARTITION_COLUMNS or present.get(column) == sql_type:
                columns.append(_quote(column))
            elif column in present:
                columns.append(f"CAST({_quote(column)} AS {sql_type}) AS {_quote(column)}")
            else:
                columns.append(f"CAST(NULL AS {sql_type}) AS {_quote(column)}")
        where = ""
        if key_range is not None:
            low, high = key_range
            where = f" WHERE {_quote(self.record_type.key[0])} BETWEEN {_sql_literal(low)} AND {_sql_literal(high)}"
        return f"SELECT {', '.join(columns)} FROM {scan}{where}"

    def _scan(self, version: int | None, files: list[DataFile]) -> tuple[str, dict[str, str] | None]:
        """The table expression of ``files`` and its columns (``None``: exactly the record type's)."""
        local = [self.store.local_path(f.key) for f in files]
        if any(path is None for path in local):
            return self._dataset(files), None
        paths = ", ".join(_sql_string(str(path)) for path in local)
        union = ", union_by_name = true" if version is None else ""
        scan = f"read_parquet([{paths}], hive_partitioning = true, hive_types = {_PARTITION_TYPES}{union})"
        if version == self.record_type.schema_version:
            return scan, None  # the record type's own columns, by definition of its schema_version
        if version is None:
            return scan, _describe(self.con, scan)  # unknown schemas: whatever these files hold
        if version not in self.columns_of_version:
            # every file of a schema version has that version's columns: one footer says which
            self.columns_of_version[version] = _describe(self.con, f"read_parquet([{_sql_string(str(local[0]))}])")
        return scan, self.columns_of_version[version]

    def _dataset(self, files: list[DataFile]) -> str:
        """Remote files: a pyarrow dataset with the record type's schema, which fills the columns a file
        lacks with NULL; registered on the connection."""
        filesystem, base = self.store.arrow_filesystem()
        schema = arrow_schema(self.record_type)
        for field in _PARTITION_SCHEMA:
            schema = schema.append(field)
        dataset = ds.dataset(
            [f"{base}/{f.key}" for f in files],
            schema=schema,
            filesystem=filesystem,
            format="parquet",
            partitioning=ds.partitioning(_PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=f"{base}/{self.record_type.namespace}",
        )
        name = f"_{self.record_type.table}_{self.datasets}"
        self.datasets += 1
        self.con.register(name, dataset)
        return _quote(name)


def _describe(con: duckdb.DuckDBPyConnection, scan: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {scan}").fetchall()}
