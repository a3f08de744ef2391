import json
from datetime import UTC, date, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from crawler.items import arrow_schema
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex, catalog_key
from crawler.pipelines.writer import BatchWriter
from crawler.query.views import connect
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store
from crawler.storage.compaction import Compactor, stored_days

DAY = date(2026, 11, 20)
NEXT = date(2026, 11, 21)


def write_batch(store, meta, names, when: datetime, version: str, run: str = "run"):
    batch = Batch(NpmPackage, when.date())
    for i, name in enumerate(names):
        row = NpmPackage(name=name, version=version, dependencies={"x": "1"}).to_row()
        row.update(_source="npm", _ingested_at=when, _run_id=run, _schema_version=1)
        batch.add(row, i + 1)
    PartitionIndex(store, meta).record(BatchWriter(store).write(batch), run)


@pytest.fixture(params=["local", "s3"])
def dataset(request, tmp_path):
    store = open_store(str(tmp_path / "data")) if request.param == "local" else request.getfixturevalue("s3_store")
    meta = MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    t = datetime(2026, 11, 20, 8, tzinfo=UTC)
    write_batch(store, meta, [f"p{i}" for i in range(10)], t, "1.0")
    write_batch(store, meta, [f"p{i}" for i in range(5, 15)], t + timedelta(hours=1), "2.0")
    write_batch(store, meta, ["p3", "p3"], t + timedelta(hours=2), "3.0")  # an exact duplicate inside a batch
    write_batch(store, meta, ["p0"], datetime(2026, 11, 21, 9, tzinfo=UTC), "9.0")
    return store, meta


def versions(store) -> dict[str, str]:
    return dict(connect(store).execute("SELECT name, version FROM npm_package").fetchall())


def history_count(store) -> int:
    return connect(store).execute("SELECT count(*) FROM npm_package_history").fetchone()[0]


def indexed_keys(store, meta) -> tuple[set[str], set[str]]:
    """The Parquet files of npm in r2_partitions and in catalog.json."""
    in_meta = {r.object_key for r in meta.partitions("npm") if r.format == "parquet"}
    catalog = json.loads(store.get_bytes(catalog_key("npm")))
    in_catalog = {f["key"] for p in catalog["partitions"].values() for f in p["files"] if f["format"] == "parquet"}
    return in_meta, in_catalog


def parquet_keys(store, day):
    prefix = f"npm/year={day.year}/month={day.month:02d}/day={day.day:02d}/"
    return sorted(o.key for o in store.list(prefix) if o.key.endswith(".parquet"))


def test_compaction_merges_and_removes_older_duplicates(dataset):
    store, meta = dataset
    before = versions(store)
    assert stored_days(store, "npm") == [DAY, NEXT]
    report = Compactor(store, meta).compact(NpmPackage, [DAY, NEXT])
    assert versions(store) == before  # the latest record of every key is kept
    assert before["p0"] == "9.0" and before["p3"] == "3.0" and before["p7"] == "2.0"
    assert len(parquet_keys(store, DAY)) == 1 and len(parquet_keys(store, NEXT)) == 1
    history = connect(store).execute("SELECT name, count(*) FROM npm_package_history GROUP BY name").fetchall()
    assert {count for _, count in history} == {1}  # older duplicates are gone physically
    assert report.input_files == 4 and report.output_files == 2
    assert report.input_rows == 23 and report.output_rows == 15
    rows = meta.partitions("npm", year=2026, month=11, day=20)
    assert [r.records for r in rows if r.format == "parquet"] == [14]  # p1..p14: p0 lives on the 21st
    assert sum(1 for r in rows if r.format == "ndjson") == 3  # raw batches are kept
    filesystem, base = store.arrow_filesystem()
    compacted = pq.read_schema(f"{base}/{parquet_keys(store, DAY)[0]}", filesystem=filesystem)
    assert compacted.remove_metadata() == arrow_schema(NpmPackage).remove_metadata()  # the record type's schema


def test_a_compaction_killed_before_deleting_its_inputs_is_completed_by_a_rerun(dataset, monkeypatch):
    store, meta = dataset
    before = versions(store)

    def crash(keys):
        raise RuntimeError("killed")

    monkeypatch.setattr(store, "delete", crash)
    with pytest.raises(RuntimeError):
        Compactor(store, meta).compact(NpmPackage, [DAY])
    # mid-swap: the new file and the old ones are both there; readers still see every record once
    assert len(parquet_keys(store, DAY)) == 4
    assert versions(store) == before
    assert history_count(store) == 16  # the index lists the new file only: 15 keys of the 20th + p0 of the 21st
    monkeypatch.undo()
    # a rerun within the grace leaves the unindexed leftovers alone (they could be batches being indexed)...
    Compactor(store, meta).compact(NpmPackage, [DAY])
    assert len(parquet_keys(store, DAY)) == 4 and versions(store) == before
    # ...and once they are older than the grace, merges and deletes them
    Compactor(store, meta, orphan_grace=timedelta(0)).compact(NpmPackage, [DAY])
    assert len(parquet_keys(store, DAY)) == 1
    assert versions(store) == before
    indexed = [r.object_key for r in meta.partitions("npm", year=2026, month=11, day=20) if r.format == "parquet"]
    assert indexed == parquet_keys(store, DAY)


def test_target_size_splits_output(dataset):
    store, meta = dataset
    report = Compactor(store, meta, target_bytes=1, batch_rows=4).compact(NpmPackage, [DAY])
    assert report.output_files == len(parquet_keys(store, DAY)) >= 3
    assert report.output_rows == 15  # the scope is one day: p0 of the 20th is the latest within it
    # written in key order: the files' key ranges do not overlap, and the catalog says so
    filesystem, base = store.arrow_filesystem()
    names = [
        pq.read_table(f"{base}/{k}", filesystem=filesystem).column("name").to_pylist() for k in parquet_keys(store, DAY)
    ]
    assert sorted(names) == sorted(names, key=lambda file: file[0]) and all(n == sorted(n) for n in names)
    assert [n for file in sorted(names) for n in file] == sorted(f"p{i}" for i in range(15))
    catalog = json.loads(store.get_bytes(catalog_key("npm")))
    entries = [f for f in catalog["partitions"]["year=2026/month=11/day=20"]["files"] if f["format"] == "parquet"]
    assert sorted((f["pk_min"], f["pk_max"], f["pk_unique"]) for f in entries) == sorted(
        (n[0], n[-1], True) for n in names
    )


def test_raw_retention_deletes_old_ndjson_only(dataset):
    store, meta = dataset
    deleted = Compactor(store, meta).expire_raw("npm", keep_days=3, today=date(2026, 11, 24))
    assert deleted == 3  # the 20th is past retention, the 21st is not
    assert not [o for o in store.list("npm/year=2026/month=11/day=20/") if o.key.endswith(".ndjson")]
    assert [o for o in store.list("npm/year=2026/month=11/day=21/") if o.key.endswith(".ndjson")]
    assert len(versions(store)) == 15


def test_the_index_never_lists_a_deleted_file_nor_misses_a_new_one(dataset, monkeypatch):
    store, meta = dataset
    before = versions(store)
    real_delete = store.delete
    seen = []

    def delete(keys):
        keys = list(keys)
        in_meta, in_catalog = indexed_keys(store, meta)
        # when files are deleted, the index has already moved to the compacted ones...
        assert not set(keys) & (in_meta | in_catalog)
        assert in_meta == in_catalog
        assert all(store.exists(key) for key in in_catalog)
        # ...and a view built at this instant reads existing files and sees every record once
        seen.append(versions(store))
        real_delete(keys)

    monkeypatch.setattr(store, "delete", delete)
    Compactor(store, meta).compact(NpmPackage, [DAY, NEXT])
    monkeypatch.undo()
    assert seen == [before, before]
    in_meta, in_catalog = indexed_keys(store, meta)
    assert in_meta == in_catalog == set(parquet_keys(store, DAY) + parquet_keys(store, NEXT))


def test_a_batch_written_but_not_yet_indexed_is_left_alone(dataset):
    store, meta = dataset
    # a crawl has written a batch and is about to index it when compaction lists the partition
    batch = Batch(NpmPackage, DAY)
    row = NpmPackage(name="late", version="1.0", dependencies={}).to_row()
    row.update(_source="npm", _ingested_at=datetime(2026, 11, 20, 23, tzinfo=UTC), _run_id="run", _schema_version=1)
    batch.add(row, 1)
    objects = BatchWriter(store).write(batch)
    in_flight = next(o.key for o in objects if o.format == "parquet")
    Compactor(store, meta).compact(NpmPackage, [DAY])
    assert store.exists(in_flight)  # neither merged nor deleted
    PartitionIndex(store, meta).record(objects, "run")  # the crawl indexes it
    assert versions(store)["late"] == "1.0"
    in_meta, in_catalog = indexed_keys(store, meta)
    assert in_flight in in_meta and in_meta == in_catalog and all(store.exists(key) for key in in_catalog)


def test_compaction_unindexes_files_missing_from_the_store(dataset):
    store, meta = dataset
    gone = parquet_keys(store, NEXT)
    store.delete(gone)  # by hand, or by an older version that deleted before unindexing
    Compactor(store, meta).compact(NpmPackage, [NEXT])
    in_meta, in_catalog = indexed_keys(store, meta)
    assert not set(gone) & (in_meta | in_catalog)
    assert "p0" in versions(store)  # p0's older record of the 20th
