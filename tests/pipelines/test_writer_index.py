import json
from datetime import UTC, datetime

import pyarrow.parquet as pq

from crawler.meta import MetaDB
from crawler.pipelines.batching import Batcher
from crawler.pipelines.index import PartitionIndex, catalog_key
from crawler.pipelines.writer import BatchWriter
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store


def make_batch(count: int):
    batcher = Batcher(max_records=count, max_bytes=10**9, idle_seconds=60)
    when = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
    for i in range(count):
        row = NpmPackage(name=f"p{i}", dependencies={"a": "1"}).to_row()
        row.update(_source="npm", _ingested_at=when, _run_id="run-1", _schema_version=1)
        full = batcher.add(NpmPackage, row, i + 1)
    return full


def test_batch_is_written_as_ndjson_and_parquet_in_the_layout(tmp_path):
    store = open_store(str(tmp_path))
    objects = BatchWriter(store).write(make_batch(5))
    keys = sorted(obj.key for obj in objects)
    assert [k.rsplit(".", 1)[1] for k in keys] == ["ndjson", "parquet"]
    assert keys[0].startswith("npm/year=2026/month=11/day=25/batch_")
    stem = keys[0].rsplit("/", 1)[1].removesuffix(".ndjson")
    _, unix_ts, batch_id = stem.split("_")
    assert unix_ts.isdigit() and batch_id
    lines = store.get_bytes(keys[0]).splitlines()
    assert [json.loads(line)["name"] for line in lines] == [f"p{i}" for i in range(5)]
    table = pq.read_table(store.local_path(keys[1]))
    assert table.num_rows == 5
    assert table.column("_run_id").to_pylist() == ["run-1"] * 5
    assert pq.ParquetFile(store.local_path(keys[1])).metadata.row_group(0).column(0).compression == "ZSTD"


def test_index_records_partitions_and_catalog(tmp_path):
    store = open_store(str(tmp_path / "data"))
    meta = MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    index = PartitionIndex(store, meta)
    for _ in range(2):
        index.record(BatchWriter(store).write(make_batch(3)), "run-1")
    rows = meta.partitions("npm", year=2026, month=11, day=25)
    assert len(rows) == 4 and {r.format for r in rows} == {"ndjson", "parquet"}
    catalog = json.loads(store.get_bytes(catalog_key("npm")))
    assert catalog["record_count"] == 6
    assert catalog["table"] == "npm_package" and catalog["primary_key"] == ["name"]
    part = catalog["partitions"]["year=2026/month=11/day=25"]
    assert part["rows"] == 6 and len(part["files"]) == 4
    assert {f["name"] for f in catalog["schema"]} >= {"name", "_ingested_at", "_run_id"}


def test_catalog_lists_schema_version_and_key_range_per_parquet_file(tmp_path):
    store = open_store(str(tmp_path / "data"))
    meta = MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    index = PartitionIndex(store, meta)
    first = BatchWriter(store).write(make_batch(3))  # p0, p1, p2
    index.record(first, "run-1")
    index.record(BatchWriter(store).write(make_batch(12)), "run-1")  # p0 … p11
    catalog = json.loads(store.get_bytes(catalog_key("npm")))
    files = {f["key"]: f for f in catalog["partitions"]["year=2026/month=11/day=25"]["files"]}
    parquet = [f for f in files.values() if f["format"] == "parquet"]
    assert sorted((f["pk_min"], f["pk_max"], f["schema_version"]) for f in parquet) == [
        ("p0", "p2", 1),
        ("p0", "p9", 1),  # string order
    ]
    assert all(f["pk_unique"] is True for f in parquet)
    assert all("pk_min" not in f for f in files.values() if f["format"] == "ndjson")
    # the ranges live in the catalog only: a rewrite from r2_partitions keeps them
    index.write_catalog("npm")
    again = json.loads(store.get_bytes(catalog_key("npm")))
    assert again["partitions"] == catalog["partitions"]


def test_key_range_and_stats():
    from crawler.pipelines.writer import KeyStats, key_range, key_stats

    assert key_range(["b", "a", "c"]) == ("a", "c")
    assert key_range([3, 1, 2]) == (1, 3)
    assert key_range([]) is None
    assert key_range(["a", None]) is None  # a null key: no range (a file with it must never be skipped)
    assert key_range(["a", 1]) is None
    rows = [{"repo": "o/r", "sha": "1"}, {"repo": "o/r", "sha": "2"}, {"repo": "o/s", "sha": "1"}]
    assert key_stats(rows, ("repo", "sha")) == KeyStats("o/r", "o/s", unique=True)
    assert key_stats([*rows, rows[0]], ("repo", "sha")) == KeyStats("o/r", "o/s", unique=False)
