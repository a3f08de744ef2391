"""What a kill left behind is put right: orphaned temporaries removed, whole but unindexed batches
indexed, half-written or unindexed compacted files removed; young files (a writer still at work) kept."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex, catalog_key
from crawler.pipelines.writer import BatchWriter
from crawler.query.views import connect
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store
from crawler.storage.layout import compacted_key
from crawler.storage.reconcile import reconcile

WHEN = datetime(2026, 11, 20, 8, tzinfo=UTC)


@pytest.fixture
def stores(tmp_path: Path):
    store = open_store(str(tmp_path / "data"))
    with MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}") as meta:
        yield store, meta, tmp_path / "data"


def batch(names: list[str], run: str = "r1") -> Batch:
    batch = Batch(NpmPackage, WHEN.date())
    for i, name in enumerate(names):
        row = NpmPackage(name=name, version="1.0.0").to_row()
        row.update(_source="npm", _ingested_at=WHEN, _run_id=run, _schema_version=1)
        batch.add(row, i + 1)
    return batch


def age(root: Path, key: str, seconds: float = 3600) -> None:
    past = time.time() - seconds
    os.utime(root / key, (past, past))


def test_a_whole_batch_left_unindexed_is_indexed_and_read(stores):
    store, meta, root = stores
    PartitionIndex(store, meta).record(BatchWriter(store).write(batch(["a", "b"])), "r1")
    orphan = BatchWriter(store).write(batch(["c", "d", "e"], run="killed"))  # killed before the index
    for obj in orphan:
        age(root, obj.key)
    done = reconcile(store, meta, ["npm"])
    parquet = next(o.key for o in orphan if o.format == "parquet")
    assert done.indexed == [parquet] and done.removed == []
    indexed = {row.object_key: row for row in meta.partitions("npm")}
    assert {o.key for o in orphan} <= set(indexed) and indexed[parquet].records == 3
    catalog = orjson.loads(store.get_bytes(catalog_key("npm")))
    assert catalog["record_count"] == 5
    (files,) = [part["files"] for part in catalog["partitions"].values()]
    entry = next(f for f in files if f["key"] == parquet)
    assert (entry["pk_min"], entry["pk_max"], entry["pk_unique"]) == ("c", "e", True)
    assert connect(store).execute("SELECT count(*) FROM npm_package").fetchone() == (5,)
    assert not reconcile(store, meta, ["npm"])  # nothing left to do


def test_half_written_and_unindexed_compacted_files_are_removed(stores):
    store, meta, root = stores
    half = BatchWriter(store).write(batch(["x"]))
    parquet = next(o.key for o in half if o.format == "parquet")
    store.delete([o.key for o in half if o.format == "ndjson"])  # killed between the two writes
    compacted = compacted_key("npm", WHEN.date())
    store.put_bytes(compacted, store.get_bytes(parquet))
    stranger = "npm/year=2026/month=11/day=20/someone-elses.parquet"
    store.put_bytes(stranger, b"not ours")
    for key in (parquet, compacted, stranger):
        age(root, key)
    done = reconcile(store, meta, ["npm"])
    assert sorted(done.removed) == sorted([parquet, compacted])
    assert {info.key for info in store.list("npm/")} == {stranger}  # a file the platform did not name stays


def test_orphaned_temporaries_are_removed_and_young_files_kept(stores):
    store, meta, root = stores
    partition = root / "npm" / "year=2026" / "month=11" / "day=20"
    partition.mkdir(parents=True)
    old_tmp, young_tmp = partition / ".tmp-0123456789abcdef", partition / ".tmp-fedcba9876543210"
    old_tmp.write_bytes(b"x")
    young_tmp.write_bytes(b"y")
    # outside every namespace too: a source's raw files (a kill while a zone file was being kept)
    raw = root / "zones" / "example"
    raw.mkdir(parents=True)
    raw_tmp = raw / ".tmp-00112233aabbccdd"
    raw_tmp.write_bytes(b"z")
    for path in (old_tmp, raw_tmp):
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    young = BatchWriter(store).write(batch(["y"]))  # a writer still at work: not indexed yet, seconds old
    done = reconcile(store, meta, ["npm"], grace=timedelta(minutes=10))
    assert done.temporaries_removed == 2 and not old_tmp.exists() and not raw_tmp.exists() and young_tmp.exists()
    assert done.indexed == [] and done.removed == []
    assert {o.key for o in young} <= {info.key for info in store.list("npm/")}
