"""The write path through an Iceberg REST catalog (as R2 Data Catalog is one): a loopback server that
speaks the REST protocol PyIceberg uses, backed by a real SQL catalog."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pyiceberg.exceptions import UnauthorizedError

from crawler.config import IcebergConfig
from crawler.meta import MetaDB
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store
from crawler.storage.compaction import Compactor
from crawler.storage.iceberg import open_tables
from crawler.storage.reconcile import reconcile
from tests.fakes.iceberg_rest import FakeIcebergRest
from tests.storage.test_iceberg import WHEN, batch, parquet


@pytest.fixture
def rest(tmp_path: Path):
    fake = FakeIcebergRest(f"sqlite:///{tmp_path / 'rest-catalog.db'}", token="t0ken", warehouse="acct_bucket")
    with fake.serve() as handle:
        yield fake, handle.base_url.rstrip("/")


def test_batches_committed_compacted_and_reconciled_through_a_rest_catalog(rest, tmp_path: Path):
    fake, url = rest
    store = open_store(str(tmp_path / "data"))
    config = IcebergConfig(enabled=True, catalog_uri=url, warehouse="acct_bucket", token="t0ken")
    tables = open_tables(config, store)
    assert tables is not None and type(tables.catalog).__name__ == "RestCatalog"
    with MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}") as meta:
        index = PartitionIndex(store, meta, tables)
        first = BatchWriter(store).write(batch(["a", "b"]))
        index.record(first, "r1")
        index.record(BatchWriter(store).write(batch(["b", "c"], run="r2")), "r2")
        index.record(first, "r1")  # a retry: nothing registered twice
        # what the server's own catalog holds: the same table, read by PyIceberg
        table = fake.catalog.load_table("crawler.npm_package")
        assert table.scan().to_arrow().num_rows == 4 and len(table.inspect.files()) == 2
        assert fake.requests["POST /v1/{prefix}/namespaces/{namespace}/tables/{table}"] == 2  # two commits
        # compaction: one replacing commit, then expiry, through the server
        Compactor(store, meta, tables=tables, snapshot_retention=timedelta(0)).compact(NpmPackage, [WHEN.date()])
        table.refresh()
        assert table.scan().to_arrow().num_rows == 3 and len(table.snapshots()) == 1
        assert parquet(first) not in {p.rsplit("/", 1)[-1] for p in table.inspect.files()["file_path"].to_pylist()}
        # reconcile reads the table through the server too
        assert not reconcile(store, meta, ["npm"], tables=tables)


def test_a_rest_catalog_refuses_a_wrong_token(rest, tmp_path: Path):
    _, url = rest
    config = IcebergConfig(enabled=True, catalog_uri=url, warehouse="acct_bucket", token="wrong")
    with pytest.raises(UnauthorizedError):
        open_tables(config, open_store(str(tmp_path / "data")))


def test_reading_before_anything_was_committed_finds_empty_tables(rest, tmp_path: Path):
    from crawler.query.views import connect

    _, url = rest
    config = IcebergConfig(enabled=True, catalog_uri=url, warehouse="acct_bucket", token="t0ken")
    store = open_store(str(tmp_path / "data"))
    tables = open_tables(config, store)
    assert connect(store, tables=tables).execute("SELECT count(*) FROM npm_package").fetchall() == [(0,)]
