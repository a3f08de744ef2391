"""Columnar items: checked and stamped like records, batched under their own limits, written as Parquet."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scrapy.exceptions import DropItem

from crawler.items import arrow_schema
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batcher
from crawler.pipelines.columnar import ArrowRecords, StampedTable, record_schema
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.normalize import NormalizePipeline
from crawler.pipelines.writer import BatchWriter
from crawler.spiders.czds.records import ZoneDomain
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store

WHEN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def domains(names: list[str | None]) -> pa.Table:
    return pa.table(
        {
            "fqdn": names,
            "tld": ["example"] * len(names),
            "zone_date": ["2026-11-25"] * len(names),
            "name_servers": [["ns1.a.net", "ns2.a.net"]] * len(names),
            "has_ds": [False] * len(names),
        }
    )


class Services:
    run_id = "run-1"

    def __init__(self) -> None:
        self.letters: list[tuple[str, Any]] = []

    def dead_letter(self, reason: str, payload: Any = None, **_: Any) -> None:
        self.letters.append((reason, payload))


def normalize(records: tuple[type, ...] = (ZoneDomain,)) -> tuple[NormalizePipeline, Services]:
    services = Services()
    stats = SimpleNamespace(values={}, inc_value=lambda name, n=1: None)
    spider = SimpleNamespace(records=records, source="zones", name="zones")
    crawler = SimpleNamespace(spider=spider, stats=stats)
    return NormalizePipeline(crawler, services), services  # type: ignore[arg-type]


def test_a_table_is_stamped_into_the_namespace_schema():
    pipeline, services = normalize()
    stamped = pipeline.process_item(ArrowRecords(ZoneDomain, domains(["a.example", "b.example"])))
    assert isinstance(stamped, StampedTable) and len(stamped) == 2
    assert stamped.table.schema.equals(arrow_schema(ZoneDomain))
    assert stamped.table.column("_run_id").to_pylist() == ["run-1", "run-1"]
    assert stamped.table.column("_source").to_pylist() == ["zones", "zones"]
    assert services.letters == []


def test_rows_without_a_key_are_one_dead_letter_and_the_rest_go_on():
    pipeline, services = normalize()
    stamped = pipeline.process_item(ArrowRecords(ZoneDomain, domains(["a.example", None, ""])))
    assert stamped.table.column("fqdn").to_pylist() == ["a.example"]
    ((reason, _payload),) = services.letters
    assert reason.startswith("missing_key: fqdn, zone_date (2 rows of 3)")


def test_an_undeclared_type_or_unfit_columns_are_dropped_as_dead_letters():
    pipeline, services = normalize(records=(NpmPackage,))
    with pytest.raises(DropItem):
        pipeline.process_item(ArrowRecords(ZoneDomain, domains(["a.example"])))
    pipeline, services = normalize()
    with pytest.raises(DropItem):
        pipeline.process_item(ArrowRecords(ZoneDomain, domains(["a.example"]).drop_columns(["tld"])))
    assert services.letters[0][0].startswith("invalid_records: KeyError")


def stamped(count: int, start: int = 0) -> pa.Table:
    pipeline, _ = normalize()
    table = pipeline.process_item(
        ArrowRecords(ZoneDomain, domains([f"d{i:05d}.example" for i in range(start, start + count)]))
    ).table
    return table


def test_a_table_larger_than_a_batch_fills_several_and_the_rest_waits():
    batcher = Batcher(max_records=10, max_bytes=10**9, idle_seconds=60, columnar_max_records=100)
    full = batcher.add_table(ZoneDomain, stamped(250), WHEN.date(), receipt=7)
    assert [len(batch) for batch in full] == [100, 100]
    assert all(batch.columnar and batch.first_receipt == 7 for batch in full)
    assert batcher.oldest_receipt() == 7 and bool(batcher)
    (rest,) = batcher.take_all()
    assert len(rest) == 50 and rest.table().column("fqdn")[0].as_py() == "d00200.example"
    assert not batcher


def test_rows_and_tables_of_one_namespace_batch_apart():
    batcher = Batcher(max_records=10, max_bytes=10**9, idle_seconds=0, columnar_max_records=100)
    row = ZoneDomain(fqdn="x.example", tld="example", zone_date="2026-11-25").to_row()
    row.update(_source="zones", _ingested_at=WHEN, _run_id="run-1", _schema_version=1)
    batcher.add(ZoneDomain, row, 1)
    batcher.add_table(ZoneDomain, stamped(5), WHEN.date(), 2)
    taken = batcher.take_idle()
    assert sorted((batch.columnar, len(batch)) for batch in taken) == [(False, 1), (True, 5)]


def test_a_columnar_batch_is_one_parquet_file_indexed_with_its_key_range(tmp_path):
    store = open_store(str(tmp_path / "data"))
    meta = MetaDB.connect(f"sqlite:///{tmp_path / 'meta.db'}")
    batcher = Batcher(max_records=10, max_bytes=10**9, idle_seconds=60, columnar_max_records=300)
    batcher.add_table(ZoneDomain, stamped(120, start=30), WHEN.date(), 1)
    (batch,) = batcher.add_table(ZoneDomain, stamped(180, start=150), WHEN.date(), 2)
    (stored,) = BatchWriter(store).write(batch)
    assert stored.format == "parquet" and stored.records == 300 and stored.key.startswith("domains/year=")
    assert (stored.key_stats.low, stored.key_stats.high, stored.key_stats.unique) == (
        "d00030.example",
        "d00329.example",
        True,
    )
    table = pq.read_table(store.local_path(stored.key))
    assert table.num_rows == 300 and table.schema.equals(arrow_schema(ZoneDomain), check_metadata=False)
    PartitionIndex(store, meta).record([stored], "run-1")
    assert [row.records for row in meta.partitions("domains")] == [300]
    assert record_schema(ZoneDomain).names == ["fqdn", "tld", "zone_date", "name_servers", "has_ds"]
