"""Every namespace is also an Apache Iceberg table, so that any engine (R2 SQL, Spark, Trino, PyIceberg)
reads what the platform writes.

The platform's Parquet files are *registered* in the table, never rewritten: a batch's file is committed
by the metadata thread just before it is indexed (``r2_partitions`` and ``catalog.json``), so no cursor
passes a batch its table lacks; compaction replaces a day's files in one commit (readers see the old set
or the new one) and expires old snapshots. The table's file set follows the partition index:

* a crash between writing and committing leaves a batch the index lacks too; :mod:`crawler.storage.reconcile`
  indexes it at the next start, and the index commits it;
* a crash between committing and indexing leaves a committed file the index lacks; reconcile indexes it
  (a batch with its NDJSON twin: committing it again is skipped, the table already holds it) or deletes it
  (a lone Parquet file), and then takes it out of the table first (:meth:`IcebergTables.sync`).

So every commit checks what the table already holds: a retried commit never registers a file twice.

Tables are ``<ICEBERG_NAMESPACE>.<record type's table>`` (``crawler.npm_package``), partitioned by the day
of ``_ingested_at`` (the key layout's day partitions), located at ``<STORAGE_URI>/<namespace>`` with their
metadata beside the namespace's catalog (:func:`crawler.storage.layout.iceberg_metadata_prefix`). The
catalog is ``ICEBERG_CATALOG_URI``: a SQL catalog (SQLAlchemy URL; by default the metadata DB itself) or an
Iceberg REST catalog (``http(s)://``, such as Cloudflare's R2 Data Catalog, with ``ICEBERG_WAREHOUSE`` and
the secret ``ICEBERG_TOKEN``).

Blocking: call it from the metadata thread (or a command), one call at a time per instance.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from crawler.config import IcebergConfig
from crawler.items import Record, arrow_schema
from crawler.meta.db import DEFAULT_STATEMENT_TIMEOUT, shut_down_socket
from crawler.storage.base import ObjectStore
from crawler.storage.layout import iceberg_metadata_prefix, is_data_key

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

__all__ = ["IcebergTables", "catalog_properties", "open_tables"]

logger = logging.getLogger(__name__)

#: the partition field: the UTC day of ``_ingested_at``, as the key layout's day partitions
PARTITION_FIELD = "_ingested_day"
#: attempts of a commit that another writer's commit got in ahead of (distributed workers, shards)
COMMIT_ATTEMPTS = 10
#: the write path trims a table's snapshots to ``snapshots_kept`` once this many more have accumulated (a
#: commit copies the table's metadata several times over: its cost grows with the snapshots it lists)
TRIM_SLACK = 10
#: snapshot summary property naming who made a commit
COMMITTED_BY = "crawler.operation"
#: the table property mapping Parquet columns to Iceberg fields by name (the platform's files carry no
#: field ids)
NAME_MAPPING = "schema.name-mapping.default"
#: table properties: manifests merged (a scan reads a few manifests, not one per batch), old metadata
#: files deleted (a commit per batch would otherwise leave one JSON file per batch behind)
TABLE_PROPERTIES = {
    "commit.manifest-merge.enabled": "true",
    "commit.manifest.min-count-to-merge": "50",
    "write.metadata.delete-after-commit.enabled": "true",
    "write.metadata.previous-versions-max": "20",
    "format-version": "2",
}


@functools.cache
def _transaction_class() -> type:
    from pyiceberg.table import Transaction

    class MetadataOnceTransaction(Transaction):
        """A transaction that computes its metadata once per staged change, not at every access.

        PyIceberg derives ``table_metadata`` afresh, as a deep copy of the table's whole metadata, each
        time it is read: a dozen times per commit, which made a batch's commit cost several times its
        write. The metadata models are frozen (a change makes a new one), so one copy per state is as safe."""

        _metadata_of: tuple[Any, Any, Any] | None = None

        @property
        def table_metadata(self) -> Any:
            base, updates = self._table.metadata, self._updates
            cached = self._metadata_of
            if cached is None or cached[0] is not base or cached[1] is not updates:
                cached = self._metadata_of = (base, updates, super().table_metadata)
            return cached[2]

    return MetadataOnceTransaction


def _transaction(table: Table) -> Any:
    return _transaction_class()(table)


def catalog_properties(
    config: IcebergConfig, store: ObjectStore, *, connect_timeout: float = DEFAULT_STATEMENT_TIMEOUT
) -> dict[str, str]:
    """The properties PyIceberg's ``load_catalog`` takes for ``config``, with the object store's file IO."""
    properties: dict[str, str] = {}
    uri = config.catalog_uri
    if uri.startswith(("http://", "https://")):
        properties.update(type="rest", uri=uri)
        if config.warehouse:
            properties["warehouse"] = config.warehouse
        if config.token:
            properties["token"] = config.token
    else:
        properties.update(type="sql", uri=sqlalchemy_url(uri, connect_timeout), warehouse=config.warehouse or store.uri)
    properties.update(store_io_properties(store))
    return properties


def sqlalchemy_url(url: str, connect_timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> str:
    """A metadata-DB style URL as SQLAlchemy reads it: PostgreSQL through psycopg 3 (installed already),
    with libpq's ``connect_timeout`` unless the URL sets one; a plain path as a SQLite file."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        from pathlib import Path

        return "sqlite:///" + str(Path(url).expanduser().resolve())
    if scheme.lower() in ("postgresql", "postgres"):
        # a database behind a dark path: connecting would wait for ever (libpq's minimum is 2 s)
        if "connect_timeout=" not in rest:
            rest += f"{'&' if '?' in rest else '?'}connect_timeout={max(connect_timeout, 2):.0f}"
        return f"postgresql+psycopg://{rest}"
    return url


def store_io_properties(store: ObjectStore) -> dict[str, str]:
    """PyIceberg file-IO properties addressing the same bucket as ``store`` (endpoint, region, credentials
    from the AWS environment, as the store reads them)."""
    if not store.uri.startswith("s3://"):
        return {}
    client = store.client  # type: ignore[attr-defined]
    properties = {"s3.endpoint": client.meta.endpoint_url, "s3.region": client.meta.region_name}
    frozen = store.credentials  # type: ignore[attr-defined]
    if frozen is not None:
        properties["s3.access-key-id"] = frozen.access_key
        properties["s3.secret-access-key"] = frozen.secret_key
        if frozen.token:
            properties["s3.session-token"] = frozen.token
    return properties


def open_tables(
    config: IcebergConfig, store: ObjectStore, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT
) -> IcebergTables | None:
    """The Iceberg tables of ``store`` per ``config``; ``None`` when ICEBERG_ENABLED is off. A SQL catalog
    on PostgreSQL is held to ``statement_timeout`` as the metadata DB is (``META_DB_TIMEOUT``)."""
    if not config.enabled:
        return None
    from pyiceberg.catalog import load_catalog

    catalog = load_catalog(config.catalog_name, **catalog_properties(config, store, connect_timeout=statement_timeout))
    engine = getattr(catalog, "engine", None)
    if engine is not None and engine.dialect.name == "postgresql":
        bound_calls(engine, statement_timeout)
    return IcebergTables(catalog, store, config.namespace, snapshots_kept=config.snapshots_kept)


def bound_calls(engine: Any, seconds: float) -> None:
    """A statement or commit of ``engine`` unanswered for ``seconds`` fails: a watchdog shuts its socket
    down, as :class:`crawler.meta.MetaDB` does (a database behind a dark path would otherwise hold the
    metadata thread, and with it the crawl, for ever). SQLAlchemy then drops the connection."""
    from sqlalchemy import event

    def arm(record_info: dict[str, Any], dbapi_connection: Any) -> None:
        disarm(record_info)
        watchdog = threading.Timer(seconds, shut_down_socket, (dbapi_connection,))
        watchdog.daemon = True
        watchdog.start()
        record_info["watchdog"] = watchdog

    def disarm(record_info: dict[str, Any]) -> None:
        watchdog = record_info.pop("watchdog", None)
        if watchdog is not None:
            watchdog.cancel()

    @event.listens_for(engine, "before_cursor_execute")
    def before_execute(conn: Any, *_: Any) -> None:
        arm(conn.connection.info, conn.connection.dbapi_connection)

    @event.listens_for(engine, "after_cursor_execute")
    def after_execute(conn: Any, *_: Any) -> None:
        disarm(conn.connection.info)

    @event.listens_for(engine, "commit")
    def before_commit(conn: Any) -> None:  # disarmed when the connection goes back to the pool
        arm(conn.connection.info, conn.connection.dbapi_connection)

    @event.listens_for(engine, "handle_error")
    def on_error(context: Any) -> None:
        if context.connection is not None:
            disarm(context.connection.connection.info)

    @event.listens_for(engine.pool, "checkin")
    def checked_in(_: Any, record: Any) -> None:
        disarm(record.info)


class IcebergTables:
    """The Iceberg tables of one object store's namespaces."""

    def __init__(self, catalog: Catalog, store: ObjectStore, namespace: str, *, snapshots_kept: int = 10) -> None:
        self.catalog = catalog
        self.store = store
        self.namespace = namespace
        self.snapshots_kept = snapshots_kept
        self._tables: dict[str, Table] = {}
        #: per platform namespace, the keys of the files its table holds (loaded once, then kept in step
        #: by this instance's commits; forgotten after a failed commit, whose outcome is unknown)
        self._held: dict[str, set[str]] = {}
        #: held by callers that share an instance between threads (the query API's thread mode)
        self.lock = threading.RLock()

    # -- names -------------------------------------------------------------------------------------

    def identifier(self, record_type: type[Record]) -> tuple[str, str]:
        return (self.namespace, record_type.table)

    def uri(self, key: str) -> str:
        """The absolute location of a stored object, as the table records it."""
        return f"{self.store.uri}/{key}"

    def key(self, location: str) -> str | None:
        """The store key of a location the table records; ``None`` for a file outside the store."""
        prefix = self.store.uri + "/"
        if location.startswith("file:") and not location.startswith("file://"):
            location = "file://" + location.removeprefix("file:")  # file:/abs, as some engines write it
        return location.removeprefix(prefix) if location.startswith(prefix) else None

    # -- tables ------------------------------------------------------------------------------------

    def table(self, record_type: type[Record], *, create: bool = True) -> Table | None:
        """The table of ``record_type``, created (with the namespace) on first use; its schema evolved when
        the record type gained columns."""
        namespace = record_type.namespace
        table = self._tables.get(namespace)
        if table is None:
            from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

            try:
                table = self.catalog.load_table(self.identifier(record_type))
            except (NoSuchTableError, NoSuchNamespaceError):  # a REST catalog may say either
                if not create:
                    return None
                table = self._create(record_type)
            if table.metadata.name_mapping() is None:  # a table another tool created: files are read by name
                mapping = table.metadata.schema().name_mapping.model_dump_json()
                with table.transaction() as transaction:
                    transaction.set_properties({NAME_MAPPING: mapping})
            self._tables[namespace] = table
        return self._evolve(record_type, table)

    def _create(self, record_type: type[Record]) -> Table:
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
        from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.schema import assign_fresh_schema_ids
        from pyiceberg.transforms import DayTransform

        with contextlib.suppress(NamespaceAlreadyExistsError):  # another worker's, or an earlier table's
            self.catalog.create_namespace(self.namespace)
        schema = assign_fresh_schema_ids(_pyarrow_to_schema_without_ids(arrow_schema(record_type)))
        spec = PartitionSpec(
            PartitionField(
                source_id=schema.find_field("_ingested_at").field_id,
                field_id=1000,
                transform=DayTransform(),
                name=PARTITION_FIELD,
            )
        )
        location = self.uri(record_type.namespace)
        properties = {
            **TABLE_PROPERTIES,
            "write.metadata.path": self.uri(iceberg_metadata_prefix(record_type.namespace).rstrip("/")),
            # the platform's files carry no Iceberg field ids: columns are matched by name
            NAME_MAPPING: schema.name_mapping.model_dump_json(),
            "crawler.primary-key": ",".join(record_type.key),
        }
        try:
            return self.catalog.create_table(
                self.identifier(record_type),
                schema=schema,
                partition_spec=spec,
                location=location,
                properties=properties,
            )
        except TableAlreadyExistsError:  # another worker created it meanwhile
            return self.catalog.load_table(self.identifier(record_type))

    def _evolve(self, record_type: type[Record], table: Table) -> Table:
        """Add the columns the record type gained (a schema update; the name mapping follows)."""
        wanted = arrow_schema(record_type)
        known = {field.name for field in table.schema().fields}
        if all(name in known for name in wanted.names):
            return table
        added = [name for name in wanted.names if name not in known]
        # a new column is optional whatever the record type says: the files written before lack it
        optional = pa.schema(
            [field.with_nullable(True) if field.name in added else field for field in wanted], wanted.metadata
        )
        with table.update_schema() as update:
            update.union_by_name(optional)
        logger.info("%s: Iceberg schema evolved, columns added: %s", record_type.namespace, ", ".join(added))
        return table

    # -- what a table holds ------------------------------------------------------------------------

    def data_files(self, table: Table) -> list[DataFile]:
        """The data files of the table's current snapshot."""
        snapshot = table.current_snapshot()
        if snapshot is None:
            return []
        return [
            entry.data_file
            for manifest in snapshot.manifests(table.io)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
        ]

    def held(self, record_type: type[Record]) -> set[str]:
        """The store keys of the files the table holds (cached; see ``_held``)."""
        namespace = record_type.namespace
        if namespace not in self._held:
            table = self.table(record_type)
            assert table is not None
            keys = {self.key(df.file_path) for df in self.data_files(table)}
            self._held[namespace] = {key for key in keys if key is not None}
        return self._held[namespace]

    # -- commits -----------------------------------------------------------------------------------

    def add(self, namespace: str, keys: Iterable[str]) -> list[str]:
        """Register stored Parquet files in the namespace's table (one commit); files it holds already are
        skipped. Returns the keys added."""
        return self.replace(namespace, removed=(), added=keys, operation="append")

    def replace(
        self, namespace: str, *, removed: Iterable[str], added: Iterable[str], operation: str = "replace"
    ) -> list[str]:
        """Take ``removed`` out of the table and register ``added`` in one commit: a reader sees the old
        set or the new one. Idempotent: files already out (or already in) are skipped. Returns the keys
        added."""
        record_type = Record.registry[namespace]
        removed, added = list(removed), list(dict.fromkeys(added))
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            from pyiceberg.exceptions import CommitFailedException

            try:
                return self._commit(record_type, removed, added, operation)
            except CommitFailedException:
                # another writer committed first: read the table again and retry on top of its commit
                self._forget(namespace)
                if attempt == COMMIT_ATTEMPTS:
                    raise
                time.sleep(min(0.05 * 2**attempt, 2.0))
            except BaseException:
                # the commit may or may not have happened: ask the table next time
                with contextlib.suppress(Exception):
                    self._forget(namespace)
                raise
        raise AssertionError("unreachable")

    def _forget(self, namespace: str) -> None:
        self._held.pop(namespace, None)
        table = self._tables.get(namespace)
        if table is not None:
            table.refresh()

    def _commit(self, record_type: type[Record], removed: list[str], added: list[str], operation: str) -> list[str]:
        from pyiceberg.io.pyarrow import parquet_file_to_data_file

        table = self.table(record_type)
        assert table is not None
        held = self.held(record_type)
        new = [key for key in added if key not in held]
        gone = set(removed) - set(added)
        # the data files to drop are read from the manifests only when the table holds some of them
        dropped = [df for df in self.data_files(table) if self.key(df.file_path) in gone] if gone & held else []
        if not new and not dropped:
            return []
        properties = {COMMITTED_BY: operation}
        # the files are described from ``table.metadata``: the transaction's own is a deep copy at every access
        metadata = table.metadata
        with _transaction(table) as transaction:
            if dropped:
                producer = transaction.update_snapshot(properties).overwrite()
            else:
                producer = transaction.update_snapshot(properties).merge_append()
            with producer as snapshot:
                for data_file in dropped:
                    snapshot.delete_data_file(data_file)
                for key in new:
                    snapshot.append_data_file(parquet_file_to_data_file(table.io, metadata, self.uri(key)))
        held.difference_update(self.key(df.file_path) for df in dropped)
        held.update(new)
        if len(table.metadata.snapshots) >= self.snapshots_kept + TRIM_SLACK:
            self._trim(table)
        return new

    def _trim(self, table: Table) -> None:
        """Expire all but the newest ``snapshots_kept`` snapshots (metadata only; the files are the
        platform's). A failure is logged, not raised: the batch is committed, and the next trim retries."""
        newest = sorted(table.metadata.snapshots, key=lambda snapshot: snapshot.timestamp_ms)
        old = [snapshot.snapshot_id for snapshot in newest[: -self.snapshots_kept]]
        current = table.metadata.current_snapshot_id
        try:
            table.maintenance.expire_snapshots().by_ids([i for i in old if i != current]).commit()
        except Exception:
            logger.warning("%s: could not expire old Iceberg snapshots", table.name(), exc_info=True)

    def sync(
        self, namespace: str, indexed: set[str], stored: set[str], settled: set[str]
    ) -> tuple[list[str], list[str]]:
        """Make the table hold the ``indexed`` Parquet files (after a crash): the indexed files it lacks
        are added, and the files it holds that the index does not (committed by a run killed before
        indexing, then deleted or about to be) are taken out, in one commit. A file that is in the store
        but not ``settled`` (younger than the reconcile grace: a concurrent writer may be about to index
        it), a file outside the store (another engine's) and an indexed file missing from the store are
        left alone. Returns (added, removed). A namespace with nothing indexed and no table yet is left
        without one: its table is created with its first batch (a crawl that stores nothing writes nothing)."""
        record_type = Record.registry[namespace]
        if not indexed and self.table(record_type, create=False) is None:
            return [], []
        held = set(self.held(record_type))
        missing = sorted(key for key in indexed - held if key in stored)
        extra = sorted(
            key
            for key in held - indexed
            if is_data_key(key, namespace, "parquet") and (key not in stored or key in settled)
        )
        if missing or extra:
            self.replace(namespace, removed=extra, added=missing, operation="reconcile")
            logger.warning(
                "%s: Iceberg table put in step with the index: %d files added, %d removed",
                namespace,
                len(missing),
                len(extra),
            )
        return missing, extra

    def expire_snapshots(self, namespace: str, retention: timedelta, now: datetime | None = None) -> int:
        """Expire the snapshots older than ``retention`` (the current one always stays). Returns how many.

        Only metadata goes: the data files are the platform's, deleted by compaction itself."""
        record_type = Record.registry[namespace]
        table = self.table(record_type, create=False)
        if table is None:
            return 0
        cutoff_ms = ((now or datetime.now(UTC)) - retention).timestamp() * 1000
        current = table.metadata.current_snapshot_id
        old = [
            s.snapshot_id for s in table.metadata.snapshots if s.timestamp_ms < cutoff_ms and s.snapshot_id != current
        ]
        if old:
            table.maintenance.expire_snapshots().by_ids(old).commit()
        return len(old)

    def describe(self, record_type: type[Record]) -> dict[str, Any]:
        """What the table holds, for the catalog and the logs."""
        table = self.table(record_type, create=False)
        if table is None:
            return {}
        snapshot = table.current_snapshot()
        return {
            "identifier": ".".join(self.identifier(record_type)),
            "snapshot_id": snapshot.snapshot_id if snapshot else None,
            "metadata_location": table.metadata_location,
        }
