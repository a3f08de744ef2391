"""After a kill: the files a crash left behind are put right before the next crawl or compaction.

A batch is written Parquet first, then its NDJSON twin, then indexed (``r2_partitions`` and the
namespace's ``catalog.json``); a local write goes through a ``.tmp-*`` file renamed into place. A
SIGKILL between those steps leaves

* temporaries that no rename will ever claim: removed (anywhere in a local store);
* a batch written whole (Parquet and NDJSON) but not indexed: indexed now, from the Parquet file itself
  (its records were never acknowledged, so the cursor is behind them: they are also fetched again, and
  the views keep the latest of each key);
* a Parquet file without its NDJSON twin, or a compacted file the compaction did not index: removed
  (the records are in indexed batches, or were never acknowledged and will be fetched again);
* a batch older than an indexed compaction of its day: removed, not indexed. A compaction unindexes its
  input batches, then deletes them: a kill in between leaves them whole but unindexed, and indexing them
  again would count their rows twice. (Were it instead a batch a crawl wrote just before the compaction
  and never indexed, its records were never acknowledged: they are fetched again.)

Only files older than ``grace`` count: a concurrent writer (another shard, a distributed worker)
indexes its files within seconds of writing them.

With Iceberg tables (:mod:`crawler.storage.iceberg`), a batch is committed to its table between being
written and being indexed, and the table is then put in step with the index: the indexed files it lacks
are committed, and the files it holds that are no longer indexed (a batch committed by a run killed
before indexing it, then removed here) are taken out of it — before they are deleted from the store,
so the table never names a file that is gone.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crawler.items import Record
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import StoredObject, key_stats
from crawler.storage.base import TEMP_PREFIX, ObjectStore
from crawler.storage.layout import namespace_prefix, parse_key
from crawler.storage.local import LocalStore

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

logger = logging.getLogger(__name__)

#: files younger than this may belong to a writer still at work
DEFAULT_GRACE = timedelta(minutes=10)
#: the run id the partition rows of batches indexed here carry
RECONCILED_RUN = "reconciled"


@dataclass
class Reconciled:
    temporaries_removed: int = 0
    indexed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: files committed to an Iceberg table / taken out of one
    committed: list[str] = field(default_factory=list)
    uncommitted: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.temporaries_removed or self.indexed or self.removed or self.committed or self.uncommitted)


def reconcile(
    store: ObjectStore,
    meta: MetaDB,
    namespaces: list[str],
    *,
    grace: timedelta = DEFAULT_GRACE,
    tables: IcebergTables | None = None,
) -> Reconciled:
    """Put right what a kill left in ``namespaces`` (see the module docstring). Blocking: run it on the
    metadata thread, before the crawl writes."""
    done = Reconciled()
    if isinstance(store, LocalStore):
        done.temporaries_removed = _remove_temporaries(store, grace)
    cutoff = datetime.now(UTC) - grace
    index = PartitionIndex(store, meta, tables)
    for namespace in namespaces:
        rows = meta.partitions(namespace)
        indexed = {row.object_key for row in rows}
        compacted = _compacted_at(rows)
        listed = {info.key: info for info in store.list(namespace_prefix(namespace))}
        orphans = []
        for key, info in sorted(listed.items()):
            data_key = parse_key(key)
            if data_key is None or data_key.format != "parquet" or data_key.kind not in ("batch", "compacted"):
                continue  # NDJSON follows its Parquet twin; files the platform did not name are left alone
            if key in indexed or info.modified > cutoff:
                continue
            twin = key.removesuffix(".parquet") + ".ndjson"
            replaced = data_key.day in compacted and info.modified <= compacted[data_key.day]
            if data_key.kind == "batch" and twin in listed and not replaced:
                objects = _described(store, namespace, key, listed[twin].size, info.size)
                index.record(objects, RECONCILED_RUN)  # committed to the table first, unless it holds it
                done.indexed.append(key)
            else:
                orphans.append(key)
        if tables is not None:
            # the table holds what the index holds: orphans go out of the table before they leave the store
            parquet = {row.object_key for row in meta.partitions(namespace) if row.format == "parquet"}
            settled = {key for key, info in listed.items() if info.modified <= cutoff}
            added, taken_out = tables.sync(namespace, parquet, set(listed), settled)
            done.committed += added
            done.uncommitted += taken_out
        if orphans:
            store.delete(orphans)
            done.removed += orphans
    if done:
        logger.warning(
            "after an interrupted run: %d temporary files removed, %d unindexed batches indexed, %d orphaned "
            "files removed, %d files committed to and %d taken out of Iceberg tables",
            done.temporaries_removed,
            len(done.indexed),
            len(done.removed),
            len(done.committed),
            len(done.uncommitted),
        )
    return done


def _compacted_at(rows: list[PartitionRow]) -> dict[date, datetime]:
    """The time of the latest indexed compaction of each day."""
    latest: dict[date, datetime] = {}
    for row in rows:
        data_key = parse_key(row.object_key)
        if data_key is None or data_key.kind != "compacted" or not row.created_at:
            continue
        at = datetime.fromisoformat(row.created_at.replace("Z", "+00:00"))
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        latest[data_key.day] = max(at, latest.get(data_key.day, at))
    return latest


def _described(
    store: ObjectStore, namespace: str, key: str, ndjson_bytes: int, parquet_bytes: int
) -> list[StoredObject]:
    """The index entries of a batch, read from its Parquet file."""
    record_type = Record.registry[namespace]
    table = pq.read_table(pa.BufferReader(store.get_bytes(key)))
    ingested = table.column("_ingested_at")
    data_key = parse_key(key)
    assert data_key is not None
    rows = table.select(list(record_type.key)).to_pylist()
    versions = table.column("_schema_version")
    common = dict(
        namespace=namespace,
        day=data_key.day,
        records=table.num_rows,
        min_ingested_at=pc.min(ingested).as_py(),
        max_ingested_at=pc.max(ingested).as_py(),
        schema_version=int(pc.max(versions).as_py()) if table.num_rows else record_type.schema_version,
        key_stats=key_stats(rows, record_type.key),
    )
    return [
        StoredObject(key=key, format="parquet", bytes=parquet_bytes, **common),
        StoredObject(key=key.removesuffix(".parquet") + ".ndjson", format="ndjson", bytes=ndjson_bytes, **common),
    ]


def _remove_temporaries(store: LocalStore, grace: timedelta) -> int:
    """Every orphaned temporary of the store, not only the crawl's namespaces': a source may keep files
    elsewhere (raw downloads), and a temporary is the store's own, whoever was writing it."""
    root = store.uri.removeprefix("file://")
    cutoff = time.time() - grace.total_seconds()
    removed = 0
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            try:
                if name.startswith(TEMP_PREFIX) and os.lstat(path).st_mtime < cutoff:
                    os.unlink(path)
                    removed += 1
            except FileNotFoundError:  # its writer renamed or removed it meanwhile
                continue
    return removed
