"""The views: files from the partition index, schemas unified by name, the latest record by the source's
own version, pruning by key ranges; on the local store and on S3."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from crawler.items import Record, arrow_schema
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex, catalog_key
from crawler.pipelines.writer import BatchWriter
from crawler.query import sandbox, views
from crawler.query.sandbox import Limits, SafeQueryEngine
from crawler.query.views import connect, read_index
from crawler.storage import ObjectStore, open_store
from crawler.storage.compaction import Compactor
from crawler.storage.layout import batch_keys
from tests.fakes.s3 import fake_aws_env

WIDGETS = "test/widgets"
DOCS = "test/docs"
DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, 8, tzinfo=UTC)


def _define(namespace: str, factory) -> type[Record]:
    """A record type of a test namespace, left out of the registry (the ``registered`` fixture puts it in)."""
    Record.registry.pop(namespace, None)
    record_type = factory()
    Record.registry.pop(namespace)
    return record_type


def _widget_v1() -> type[Record]:
    class Widget(Record):
        namespace = WIDGETS
        table = "test_widget"
        key = ("name",)
        schema_version = 1

        name: str
        size: int | None = None

    return Widget


def _widget_v2() -> type[Record]:
    class Widget(Record):
        namespace = WIDGETS
        table = "test_widget"
        key = ("name",)
        schema_version = 2  # adds a nullable column

        name: str
        size: int | None = None
        colour: str | None = None

    return Widget


def _doc(column: str | None) -> type[Record]:
    class Doc(Record):
        namespace = DOCS
        table = "test_doc"
        key = ("id",)
        version_column = column

        id: str
        revision: int | None = None
        body: str

    return Doc


WidgetV1 = _define(WIDGETS, _widget_v1)
WidgetV2 = _define(WIDGETS, _widget_v2)
VersionedDoc = _define(DOCS, lambda: _doc("revision"))
PlainDoc = _define(DOCS, lambda: _doc(None))


@pytest.fixture
def registered() -> Iterator[Any]:
    """``registered(RecordType)`` makes it the record type of its namespace for the test."""
    namespaces = set()

    def register(record_type: type[Record]) -> type[Record]:
        namespaces.add(record_type.namespace)
        Record.registry[record_type.namespace] = record_type
        return record_type

    yield register
    for namespace in namespaces:
        Record.registry.pop(namespace, None)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[ObjectStore]:
    if request.param == "local":
        yield open_store(str(tmp_path / "data"))
        return
    server = request.getfixturevalue("s3_server")
    monkeypatch = request.getfixturevalue("monkeypatch")
    fake_aws_env(monkeypatch, server.endpoint_url)
    s3 = open_store(f"s3://{server.bucket}/views-{uuid.uuid4().hex[:8]}")
    yield s3
    s3.delete(o.key for o in s3.list())


@pytest.fixture
def meta(tmp_path) -> Iterator[MetaDB]:
    with MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}") as db:
        yield db


def write(store: ObjectStore, meta: MetaDB, record_type: type[Record], records: list[dict], when: datetime, run: str):
    """One batch through the platform's writer and index."""
    batch = Batch(record_type, when.date())
    for i, fields in enumerate(records):
        row = record_type(**fields).to_row()
        row.update(_source="test", _ingested_at=when, _run_id=run, _schema_version=record_type.schema_version)
        batch.add(row, i + 1)
    objects = BatchWriter(store).write(batch)
    PartitionIndex(store, meta).record(objects, run)
    return next(o.key for o in objects if o.format == "parquet")


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall())


# -- which files: the partition index --------------------------------------------------------------


def test_views_read_the_catalog_and_do_not_list_the_store(store, meta, registered, monkeypatch):
    registered(WidgetV1)
    write(store, meta, WidgetV1, [{"name": "a", "size": 1}], T0, "r1")
    # a Parquet file nobody indexed (a batch being written right now): not read
    stray, _ = batch_keys(WIDGETS, DAY)
    store.put_bytes(stray, store.get_bytes(read_index(store, WidgetV1).files[0].key))

    real_list = store.list

    def no_listing(prefix=""):
        assert not prefix.startswith(WIDGETS), f"an indexed namespace was listed: {prefix!r}"
        return real_list(prefix)  # namespaces that never had a catalog: nothing there

    monkeypatch.setattr(store, "list", no_listing)
    assert read_index(store, WidgetV1).source == "catalog"
    assert rows(connect(store), "SELECT name, size FROM test_widget_history") == [("a", 1)]


def test_views_read_r2_partitions_when_given_the_metadata_db(store, meta, registered):
    registered(WidgetV1)
    write(store, meta, WidgetV1, [{"name": "a", "size": 1}], T0, "r1")
    store.delete([catalog_key(WIDGETS)])
    assert read_index(store, WidgetV1, meta).source == "meta"
    assert rows(connect(store, meta), "SELECT name FROM test_widget") == [("a",)]


def test_a_namespace_without_a_catalog_is_listed(store, meta, registered):
    registered(WidgetV1)
    write(store, meta, WidgetV1, [{"name": "a", "size": 1}], T0, "r1")
    store.delete([catalog_key(WIDGETS)])
    assert read_index(store, WidgetV1).source == "listing"
    assert rows(connect(store), "SELECT name, size FROM test_widget") == [("a", 1)]


def test_an_empty_namespace_has_typed_empty_views(store, registered):
    registered(WidgetV2)
    con = connect(store)
    assert con.execute("SELECT count(*) FROM test_widget").fetchone() == (0,)
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE test_widget_history)").fetchall())
    assert types["size"] == "BIGINT" and types["colour"] == "VARCHAR" and types["year"] == "BIGINT"


# -- which columns: schemas unified by name ------------------------------------------------------


@pytest.mark.parametrize("order", ["old first", "new first"])
def test_a_column_added_by_a_new_schema_version_reads_as_null_in_old_files(store, meta, registered, order):
    old = (WidgetV1, [{"name": "a", "size": 1}, {"name": "b", "size": 2}], T0, "r1")
    new = (WidgetV2, [{"name": "b", "size": 3, "colour": "red"}, {"name": "c", "colour": "blue"}], T0, "r2")
    for record_type, records, when, run in [old, new] if order == "old first" else [new, old]:
        registered(record_type)
        later = when + timedelta(hours=1) if run == "r2" else when
        write(store, meta, record_type, records, later, run)
    registered(WidgetV2)
    con = connect(store)
    assert rows(con, "SELECT name, size, colour, _schema_version FROM test_widget_history") == [
        ("a", 1, None, 1),
        ("b", 2, None, 1),
        ("b", 3, "red", 2),
        ("c", None, "blue", 2),
    ]
    assert rows(con, "SELECT name, size, colour FROM test_widget") == [
        ("a", 1, None),
        ("b", 3, "red"),
        ("c", None, "blue"),
    ]
    assert rows(con, "SELECT name FROM test_widget WHERE colour IS NULL") == [("a",)]
    assert rows(con, "SELECT year, month, day, count(*) FROM test_widget_history GROUP BY ALL") == [(2026, 11, 20, 4)]

    report = Compactor(store, meta).compact(WidgetV2, [DAY])
    assert report.input_rows == 4 and report.output_rows == 3
    con = connect(store)
    assert rows(con, "SELECT name, size, colour FROM test_widget_history") == [
        ("a", 1, None),
        ("b", 3, "red"),
        ("c", None, "blue"),
    ]
    (compacted,) = read_index(store, WidgetV2).files
    assert compacted.schema_version == 2
    filesystem, base = store.arrow_filesystem()
    written = pq.read_schema(f"{base}/{compacted.key}", filesystem=filesystem).remove_metadata()
    assert written == arrow_schema(WidgetV2).remove_metadata()


def test_files_of_unknown_version_are_unified_by_name(store, meta, registered):
    registered(WidgetV1)
    write(store, meta, WidgetV1, [{"name": "a", "size": 1}], T0, "r1")
    registered(WidgetV2)
    write(store, meta, WidgetV2, [{"name": "b", "colour": "red"}], T0, "r2")
    store.delete([catalog_key(WIDGETS)])  # listed: versions unknown
    assert {f.schema_version for f in read_index(store, WidgetV2).files} == {None}
    assert rows(connect(store), "SELECT name, size, colour FROM test_widget") == [("a", 1, None), ("b", None, "red")]


# -- which rows: the latest by the source's own version ---------------------------------------------


@pytest.mark.parametrize("compacted", [False, True], ids=["views", "compaction"])
def test_the_latest_record_is_the_highest_source_version_not_the_last_ingested(store, meta, registered, compacted):
    registered(VersionedDoc)
    write(store, meta, VersionedDoc, [{"id": "x", "revision": 7, "body": "new"}], T0, "r1")
    # fetched later from a stale copy (a CDN, a lagging mirror): an older revision, ingested last
    write(store, meta, VersionedDoc, [{"id": "x", "revision": 6, "body": "stale"}], T0 + timedelta(hours=1), "r2")
    # a record without a version never beats one with a version
    write(store, meta, VersionedDoc, [{"id": "x", "revision": None, "body": "unknown"}], T0 + timedelta(hours=2), "r3")
    # between equal versions, the later ingestion wins
    write(store, meta, VersionedDoc, [{"id": "y", "revision": 1, "body": "first"}], T0, "r1")
    write(store, meta, VersionedDoc, [{"id": "y", "revision": 1, "body": "second"}], T0 + timedelta(hours=1), "r2")
    if compacted:
        Compactor(store, meta).compact(VersionedDoc, [DAY])
        assert connect(store).execute("SELECT count(*) FROM test_doc_history").fetchone() == (2,)
    assert rows(connect(store), "SELECT id, revision, body FROM test_doc") == [("x", 7, "new"), ("y", 1, "second")]
    assert rows(connect(store), "SELECT body FROM test_doc WHERE id = 'x'") == [("new",)]


def test_without_a_version_column_the_last_ingested_record_wins(store, meta, registered):
    registered(PlainDoc)
    write(store, meta, PlainDoc, [{"id": "x", "revision": 7, "body": "new"}], T0, "r1")
    write(store, meta, PlainDoc, [{"id": "x", "revision": 6, "body": "stale"}], T0 + timedelta(hours=1), "r2")
    assert rows(connect(store), "SELECT id, body FROM test_doc") == [("x", "stale")]
    Compactor(store, meta).compact(PlainDoc, [DAY])
    assert rows(connect(store), "SELECT id, body FROM test_doc_history") == [("x", "stale")]


def test_latest_order():
    assert views.latest_order(PlainDoc) == "_ingested_at DESC, _run_id DESC"
    assert views.latest_order(VersionedDoc) == '"revision" DESC NULLS LAST, _ingested_at DESC, _run_id DESC'


# -- pruning by key ranges -------------------------------------------------------------------------


def test_a_filter_on_the_key_skips_files_whose_range_excludes_it(tmp_path, meta, registered, monkeypatch):
    """Files are grouped by the key ranges the index keeps; a point query never opens the other groups."""
    store = open_store(str(tmp_path / "data"))
    registered(WidgetV1)
    monkeypatch.setattr(views, "MAX_BRANCHES", 2)  # 7 files: groups of 4
    keys = [
        write(store, meta, WidgetV1, [{"name": f"{letter}{i}", "size": i} for i in range(3)], T0, "r1")
        for letter in "abcdef"
    ]
    # a re-fetch of names all over the range: its group spans everything and is always read
    write(store, meta, WidgetV1, [{"name": "a0", "size": 10}, {"name": "f2", "size": 12}], T0 + timedelta(1), "r2")
    assert all(f.key_range for f in read_index(store, WidgetV1).files)
    con = connect(store)
    # then a file of the group [a..d] breaks (after the views are defined: DuckDB may read any file's
    # footer while it binds them, so breaking it before would test DuckDB, not the pruning)
    with open(store.local_path(keys[1]), "wb") as broken:
        broken.write(b"not parquet")
    assert rows(con, "SELECT name, size FROM test_widget WHERE name = 'e1'") == [("e1", 1)]
    assert rows(con, "SELECT name, size FROM test_widget WHERE name = 'f2'") == [("f2", 12)]
    with pytest.raises(duckdb.Error):
        con.execute("SELECT count(*) FROM test_widget WHERE name = 'b1'").fetchall()


def test_key_ranges_leave_no_row_behind(store, meta, registered, monkeypatch):
    registered(WidgetV1)
    monkeypatch.setattr(views, "MAX_BRANCHES", 3)
    for start in range(0, 50, 7):
        write(store, meta, WidgetV1, [{"name": f"w{i:03d}", "size": i} for i in range(start, start + 7)], T0, "r")
    write(store, meta, WidgetV1, [{"name": f"w{i:03d}", "size": -i} for i in (0, 25, 49)], T0 + timedelta(1), "r2")
    con = connect(store)
    assert con.execute("SELECT count(*), sum(size) FROM test_widget").fetchone() == (56, sum(range(56)) - 2 * 74)
    assert con.execute("SELECT count(*) FROM test_widget_history").fetchone() == (59,)
    for name, size in (("w000", 0), ("w025", -25), ("w055", 55), ("w030", 30)):
        assert rows(con, f"SELECT size FROM test_widget WHERE name = '{name}'") == [(size,)]


def test_files_of_unique_disjoint_keys_are_read_without_deduplication(store, meta, registered):
    """A compacted file, or ordered batches without repeats, hold the latest record of each of their keys
    as long as no other file's range overlaps theirs: the latest view reads them as they are."""
    registered(VersionedDoc)
    write(store, meta, VersionedDoc, [{"id": f"a{i}", "revision": i, "body": "v"} for i in range(3)], T0, "r1")
    write(store, meta, VersionedDoc, [{"id": f"b{i}", "revision": i, "body": "v"} for i in range(3)], T0, "r1")
    con = connect(store)
    assert "WINDOW" not in con.execute("EXPLAIN SELECT * FROM test_doc").fetchall()[0][1].upper()
    assert con.execute("SELECT count(*) FROM test_doc").fetchone() == (6,)
    # a file that repeats a key is de-duplicated, whatever its range
    write(
        store,
        meta,
        VersionedDoc,
        [{"id": "c0", "revision": 2, "body": "new"}, {"id": "c0", "revision": 1, "body": "old"}],
        T0,
        "r2",
    )
    # and so is a file whose range overlaps another file's
    write(store, meta, VersionedDoc, [{"id": "a1", "revision": 9, "body": "new"}], T0 + timedelta(hours=1), "r3")
    con = connect(store)
    assert rows(con, "SELECT id, body FROM test_doc WHERE body = 'new' OR id IN ('a0', 'a1')") == [
        ("a0", "v"),
        ("a1", "new"),
        ("c0", "new"),
    ]
    assert con.execute("SELECT count(*) FROM test_doc").fetchone() == (7,)
    Compactor(store, meta).compact(VersionedDoc, [DAY])
    con = connect(store)
    assert "WINDOW" not in con.execute("EXPLAIN SELECT * FROM test_doc").fetchall()[0][1].upper()
    assert rows(con, "SELECT id, body FROM test_doc WHERE body = 'new'") == [("a1", "new"), ("c0", "new")]


# -- the sandbox keeps its connection while the index stands --------------------------------------


def test_the_sandbox_reuses_its_connection_until_the_index_changes(tmp_path, meta, registered, monkeypatch):
    store = open_store(str(tmp_path / "data"))
    registered(WidgetV1)
    write(store, meta, WidgetV1, [{"name": "a", "size": 1}], T0, "r1")
    opened = []
    real_open = sandbox.open_locked
    monkeypatch.setattr(sandbox, "open_locked", lambda *a, **k: opened.append(1) or real_open(*a, **k))
    sandbox._connections.clear()
    with SafeQueryEngine(store, isolation="thread", workers=1, timeout=5) as engine:
        count = "SELECT count(*) FROM test_widget"
        assert engine.run(count).rows == [[1]] and engine.run(count).rows == [[1]]
        assert len(opened) == 1
        write(store, meta, WidgetV1, [{"name": "b", "size": 2}], T0, "r2")
        assert engine.run(count).rows == [[2]] and len(opened) == 2
        # a compaction deletes the files the kept connection reads: the next query reads the new index
        Compactor(store, meta).compact(WidgetV1, [DAY])
        assert engine.run(count).rows == [[2]] and len(opened) == 3


def test_a_query_that_loses_its_files_to_a_compaction_is_run_again(tmp_path, meta, registered, monkeypatch):
    store = open_store(str(tmp_path / "data"))
    registered(WidgetV1)
    for name in "ab":
        write(store, meta, WidgetV1, [{"name": name, "size": 1}], T0, "r1")
    real_execute = sandbox._execute_locked
    calls = []

    def compact_first(con, statement, limits):
        calls.append(1)
        if len(calls) == 1:  # the files are swapped after the views were built, before the query reads them
            Compactor(store, meta).compact(WidgetV1, [DAY])
        return real_execute(con, statement, limits)

    monkeypatch.setattr(sandbox, "_execute_locked", compact_first)
    sandbox._connections.clear()
    result = sandbox.execute(store, "SELECT count(*) FROM test_widget", Limits(timeout=5))
    assert result["rows"] == [[2]] and len(calls) == 2
