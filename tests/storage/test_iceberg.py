"""Every namespace is also an Iceberg table: batches registered as written (never rewritten), once each,
partitioned by ingestion day; a schema that gains a column evolves; what a crash left is put right by
reconcile; compaction swaps the files in one commit and expires old snapshots. On a SQL catalog in SQLite
and in PostgreSQL, with the store local and on S3 (moto); each table is read back by PyIceberg alone."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.catalog import load_catalog
from pyiceberg.catalog.sql import SqlCatalog

from crawler.config import IcebergConfig
from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter, StoredObject
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import ObjectStore, open_store
from crawler.storage.compaction import Compactor
from crawler.storage.iceberg import IcebergTables, catalog_properties, open_tables
from crawler.storage.layout import batch_keys
from crawler.storage.reconcile import reconcile

WHEN = datetime(2026, 11, 20, 8, tzinfo=UTC)


@pytest.fixture
def evolving() -> Iterator[type[Record]]:
    """A record type at its version 2: it gained ``stars`` (kept out of the registry after)."""

    class Evolving(Record):
        namespace = "test/iceberg-evolving"
        table = "test_iceberg_evolving"
        key = ("name",)
        schema_version = 2
        name: str
        stars: int | None = None

    yield Evolving
    Record.registry.pop(Evolving.namespace)


def version_1(record_type: type[Record]) -> pa.Schema:
    """The schema the record type had before it gained ``stars``."""
    schema = arrow_schema(record_type)
    return schema.remove(schema.get_field_index("stars"))


def old_file(setup: Setup, record_type: type[Record], names: list[str]) -> str:
    """A Parquet file written at version 1 (no ``stars``), stored and committed; its key."""
    rows = [{k: v for k, v in row.items() if k != "stars"} for row in batch(names, record_type=record_type).rows]
    for row in rows:
        row["_schema_version"] = 1
    key, _ = batch_keys(record_type.namespace, WHEN.date())
    setup.store.put_bytes(key, parquet_bytes(pa.Table.from_pylist(rows, schema=version_1(record_type))))
    setup.tables.add(record_type.namespace, [key])
    return key


def batch(names: list[str], run: str = "r1", record_type: type[Record] = NpmPackage, **fields) -> Batch:
    batch = Batch(record_type, WHEN.date())
    for i, name in enumerate(names):
        if record_type is NpmPackage:
            row = NpmPackage(name=name, version="1.0.0").to_row()
        else:
            row = record_type(name=name, **fields).to_row()
        row.update(
            _source="test",
            _ingested_at=WHEN + timedelta(seconds=i),
            _run_id=run,
            _schema_version=record_type.schema_version,
        )
        batch.add(row, i + 1)
    return batch


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def parquet(objects: list[StoredObject]) -> str:
    return next(obj.key for obj in objects if obj.format == "parquet")


def age(store: ObjectStore, key: str) -> None:
    """Make a local file look an hour old (past reconcile's grace)."""
    path = store.local_path(key)
    assert path is not None
    past = time.time() - 3600
    os.utime(path, (past, past))


class Setup:
    def __init__(self, store: ObjectStore, meta_url: str, namespace: str = "crawler") -> None:
        self.store = store
        self.meta_url = meta_url
        self.meta = MetaDB.connect(meta_url)
        self.config = IcebergConfig(enabled=True, catalog_uri=meta_url, namespace=namespace)
        tables = open_tables(self.config, store)
        assert tables is not None
        self.tables: IcebergTables = tables
        self.index = PartitionIndex(store, self.meta, self.tables)

    def write(self, names: list[str], **kw) -> list[StoredObject]:
        objects = BatchWriter(self.store).write(batch(names, **kw))
        self.index.record(objects, "r1")
        return objects

    def other_engine(self):
        """The table as another engine sees it: a catalog of its own, from the same properties."""
        return load_catalog(self.config.catalog_name, **catalog_properties(self.config, self.store))

    def rows(self, table: str = "npm_package") -> int:
        return self.other_engine().load_table(f"{self.config.namespace}.{table}").scan().to_arrow().num_rows

    def files(self, table: str = "npm_package") -> set[str]:
        loaded = self.other_engine().load_table(f"{self.config.namespace}.{table}")
        return {path.removeprefix(self.store.uri + "/") for path in loaded.inspect.files()["file_path"].to_pylist()}

    def close(self) -> None:
        self.meta.close()


@pytest.fixture
def local(tmp_path: Path):
    setup = Setup(open_store(str(tmp_path / "data")), f"sqlite:///{tmp_path / 'meta.db'}")
    yield setup
    setup.close()


def test_batches_are_registered_once_partitioned_by_day_and_read_by_pyiceberg(local: Setup):
    first = local.write(["a", "b"])
    second = local.write(["c", "d", "e"])
    assert local.files() == {parquet(first), parquet(second)}  # the written files themselves
    assert local.rows() == 5
    table = local.other_engine().load_table("crawler.npm_package")
    (field,) = table.spec().fields
    assert (str(field.transform), table.schema().find_field(field.source_id).name) == ("day", "_ingested_at")
    snapshots = len(table.snapshots())
    # a retried commit (the same objects again, through the index) registers nothing twice
    local.index.record(first, "r1")
    local.tables._held.clear()  # and not because of the cache: a fresh look at the table
    assert local.tables.add("npm", [parquet(second)]) == []
    table.refresh()
    assert len(table.snapshots()) == snapshots and local.rows() == 5
    # the scan's filter on the day partition prunes by the partition
    day = table.scan(row_filter="_ingested_at >= '2026-11-21T00:00:00+00:00'").to_arrow()
    assert day.num_rows == 0


def test_a_commit_whose_outcome_was_lost_is_not_repeated(local: Setup, monkeypatch):
    local.write(["a"])
    catalog = local.tables.catalog
    commit = catalog.commit_table

    def commit_then_fail(*args, **kwargs):
        commit(*args, **kwargs)
        raise ConnectionError("the answer of the commit was lost")

    monkeypatch.setattr(catalog, "commit_table", commit_then_fail)
    objects = BatchWriter(local.store).write(batch(["b", "c"]))
    with pytest.raises(ConnectionError):
        local.index.record(objects, "r1")
    monkeypatch.setattr(catalog, "commit_table", commit)
    local.index.record(objects, "r1")  # the store pipeline's retry
    assert local.rows() == 3
    assert len(local.files()) == 2


def test_a_record_type_that_gains_a_column_evolves_the_table_schema(local: Setup, evolving: type[Record]):
    # the table as created when the record type was at version 1
    catalog = local.tables.catalog
    catalog.create_namespace("crawler")
    catalog.create_table("crawler.test_iceberg_evolving", schema=version_1(evolving))
    old_file(local, evolving, ["a", "b"])
    new = BatchWriter(local.store).write(batch(["c"], record_type=evolving, stars=5))
    local.index.record(new, "r1")
    table = local.other_engine().load_table("crawler.test_iceberg_evolving")
    assert "stars" in table.schema().column_names and not table.schema().find_field("stars").required
    rows = table.scan().to_arrow().sort_by("name")
    assert rows.column("stars").to_pylist() == [None, None, 5]


def test_reconcile_commits_and_uncommits_what_a_crash_left(local: Setup):
    store, tables = local.store, local.tables
    kept = local.write(["a", "b"])
    # killed between writing and committing: neither indexed nor committed
    uncommitted = BatchWriter(store).write(batch(["c"], run="killed"))
    # killed between committing and indexing: committed, not indexed
    committed = BatchWriter(store).write(batch(["d"], run="killed"))
    tables.add("npm", [parquet(committed)])
    # a lone Parquet file (a columnar batch, or a batch killed before its NDJSON twin), committed
    lone = BatchWriter(store).write(batch(["e"], run="killed"))
    store.delete([o.key for o in lone if o.format == "ndjson"])
    tables.add("npm", [parquet(lone)])
    for obj in uncommitted + committed + lone:
        if store.exists(obj.key):
            age(store, obj.key)
    # a file committed seconds ago by a writer still at work is left alone
    young = BatchWriter(store).write(batch(["f"], run="working"))
    tables.add("npm", [parquet(young)])

    done = reconcile(store, local.meta, ["npm"], tables=local.tables)
    assert sorted(done.indexed) == sorted([parquet(uncommitted), parquet(committed)])
    assert done.removed == [parquet(lone)] and done.uncommitted == [parquet(lone)]
    assert local.files() == {parquet(kept), parquet(uncommitted), parquet(committed), parquet(young)}
    assert not store.exists(parquet(lone))
    assert local.rows() == 5  # a, b, c, d and f: every committed file exists
    local.tables._held.clear()
    assert not reconcile(store, local.meta, ["npm"], tables=local.tables)  # nothing left to do


def test_files_indexed_before_iceberg_was_on_are_committed_at_the_next_start(local: Setup):
    earlier = BatchWriter(local.store).write(batch(["a", "b"]))
    PartitionIndex(local.store, local.meta).record(earlier, "r0")  # Iceberg off
    done = reconcile(local.store, local.meta, ["npm"], tables=local.tables)
    assert done.committed == [parquet(earlier)]
    assert local.rows() == 2


def test_compaction_replaces_the_files_in_one_commit_and_expires_old_snapshots(local: Setup):
    for n in range(3):
        local.write([f"p{n}", "shared"], run=f"r{n}")
    table = local.other_engine().load_table("crawler.npm_package")
    before = table.current_snapshot()
    assert before is not None and len(table.snapshots()) == 3
    compactor = Compactor(local.store, local.meta, tables=local.tables, snapshot_retention=timedelta(0))
    report = compactor.compact(NpmPackage, [WHEN.date()])
    assert report.output_files == 1 and report.snapshots_expired == 3
    table.refresh()
    (compacted,) = local.files()
    assert "compacted_" in compacted and local.store.exists(compacted)
    assert local.rows() == 4  # p0, p1, p2 and the latest "shared"
    # one commit, right after the last append, replaced three files by one
    current = table.current_snapshot()
    assert current.sequence_number == before.sequence_number + 1
    assert current.summary["deleted-data-files"] == "3" and current.summary["added-data-files"] == "1"
    assert [s.snapshot_id for s in table.snapshots()] == [current.snapshot_id]  # the older ones expired
    scanned = table.scan().to_arrow()
    assert pc.count_distinct(scanned.column("name")).as_py() == 4


def test_off_switch(tmp_path: Path):
    from scrapy.settings import Settings

    from crawler.config import IngestionConfig

    assert IngestionConfig.from_settings(Settings({"ICEBERG_ENABLED": "false"})).iceberg is None
    config = IngestionConfig.from_settings(Settings({"STORAGE_URI": str(tmp_path)}))
    assert config.iceberg is not None and config.iceberg.catalog_uri == config.meta_db_url


def test_sql_catalog_in_postgresql(tmp_path: Path, pg_url: str):
    setup = Setup(open_store(str(tmp_path / "data")), pg_url)
    try:
        first = setup.write(["a", "b"])
        setup.write(["c"])
        assert setup.rows() == 3
        catalog = setup.other_engine()
        assert isinstance(catalog, SqlCatalog) and catalog.engine.dialect.name == "postgresql"
        assert ("crawler", "npm_package") in catalog.list_tables("crawler")
        setup.index.record(first, "r1")
        assert setup.rows() == 3
    finally:
        setup.close()


def test_store_on_s3(s3_store, tmp_path: Path):
    setup = Setup(s3_store, f"sqlite:///{tmp_path / 'meta.db'}")
    try:
        objects = setup.write(["a", "b"])
        setup.write(["c"])
        assert setup.rows() == 3
        location = setup.other_engine().load_table("crawler.npm_package").location()
        assert location == f"{s3_store.uri}/npm"
        assert any(info.key.startswith("npm/_metadata/iceberg/") for info in s3_store.list("npm/_metadata/"))
        compactor = Compactor(setup.store, setup.meta, tables=setup.tables)
        compactor.compact(NpmPackage, [WHEN.date()])
        assert setup.rows() == 3 and parquet(objects) not in setup.files()
    finally:
        setup.close()


def test_views_over_the_iceberg_snapshot_match_the_index_views(local: Setup, evolving: type[Record]):
    from crawler.query.views import connect, iceberg_index

    for n in range(3):
        local.write([f"p{n}", "shared"], run=f"r{n}")
    # a file of the namespace written before it gained "stars" (schema version 1), then one of version 2
    old_file(local, evolving, ["a", "b"])
    new = BatchWriter(local.store).write(batch(["c"], record_type=evolving, stars=5))
    local.index.record(new, "r1")
    index = iceberg_index(local.tables, NpmPackage)
    assert index.source == "iceberg" and len(index.files) == 3
    # versions and key ranges from the table's column statistics
    assert {f.schema_version for f in index.files} == {1} and all(f.key_range for f in index.files)
    by_index, by_iceberg = connect(local.store, local.meta), connect(local.store, tables=local.tables)
    for sql in (
        "SELECT count(*) FROM npm_package_history",
        "SELECT name, _run_id FROM npm_package ORDER BY name",
        "SELECT name, day FROM npm_package_history WHERE name = 'p1'",
    ):
        assert by_iceberg.sql(sql).fetchall() == by_index.sql(sql).fetchall()
    # a file of the older schema version reads the column it lacks as NULL
    evolved = iceberg_index(local.tables, evolving)
    assert sorted(f.schema_version for f in evolved.files) == [1, 2]
    rows = by_iceberg.sql("SELECT name, stars FROM test_iceberg_evolving ORDER BY name").fetchall()
    assert rows == [("a", None), ("b", None), ("c", 5)]


def test_a_table_written_to_by_another_engine_is_scanned_whole(local: Setup):
    from crawler.query.views import connect, iceberg_index

    local.write(["a", "b"])
    table = local.other_engine().load_table("crawler.npm_package")
    row = NpmPackage(name="z", version="2.0.0").to_row()
    row.update(_source="spark", _ingested_at=WHEN, _run_id="other", _schema_version=1)
    # a file another engine wrote in the table's location, outside the platform's layout
    local.store.put_bytes(
        "npm/data/00000-0-spark.parquet", parquet_bytes(pa.Table.from_pylist([row], arrow_schema(NpmPackage)))
    )
    table.add_files([f"{local.store.uri}/npm/data/00000-0-spark.parquet"])
    index = iceberg_index(local.tables, NpmPackage)
    assert index.rows is not None and index.rows.num_rows == 3
    con = connect(local.store, tables=local.tables)
    assert con.sql("SELECT name, year, day FROM npm_package ORDER BY name").fetchall() == [
        ("a", 2026, 20),
        ("b", 2026, 20),
        ("z", 2026, 20),
    ]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_the_query_api_reads_the_iceberg_snapshot(local: Setup, isolation: str):
    from crawler.query.sandbox import SafeQueryEngine

    local.write(["a", "b"])
    local.write(["c", "b"], run="r2")  # "b" ingested at the same instant as before: the later run wins
    engine = SafeQueryEngine(local.store, isolation=isolation, workers=1, iceberg=local.config)
    try:
        history = engine.run("SELECT count(*) AS n FROM npm_package_history")
        latest = engine.run("SELECT name, _run_id FROM npm_package ORDER BY name")
    finally:
        engine.close()
    assert [tuple(row) for row in history.rows] == [(4,)]
    assert [tuple(row) for row in latest.rows] == [("a", "r1"), ("b", "r2"), ("c", "r2")]
