from datetime import UTC, datetime, timedelta

import orjson

from crawler.pipelines.batching import Batcher
from crawler.spiders.npm.records import NpmPackage


def row(name: str, when: datetime | None = None) -> dict:
    data = NpmPackage(name=name).to_row()
    data.update(_source="npm", _ingested_at=when or datetime.now(UTC), _run_id="r", _schema_version=1)
    return data


def test_flush_at_record_count():
    batcher = Batcher(max_records=3, max_bytes=10**9, idle_seconds=60)
    assert batcher.add(NpmPackage, row("a"), 1) is None
    assert batcher.add(NpmPackage, row("b"), 2) is None
    full = batcher.add(NpmPackage, row("c"), 3)
    assert full is not None and len(full) == 3
    assert (full.first_receipt, full.last_receipt) == (1, 3)
    assert batcher.open == {}


def test_flush_at_bytes_and_lines_are_ndjson():
    batcher = Batcher(max_records=1000, max_bytes=500, idle_seconds=60)
    full = None
    count = 0
    while full is None:
        count += 1
        full = batcher.add(NpmPackage, row(f"package-{count}"), count)
    assert full.nbytes >= 500
    assert full.nbytes == sum(len(line) for line in full.lines)
    assert all(line.endswith(b"\n") for line in full.lines)
    assert orjson.loads(full.lines[0])["_ingested_at"].endswith("Z")


def test_rows_of_different_days_go_to_different_batches():
    batcher = Batcher(max_records=10, max_bytes=10**9, idle_seconds=60)
    today = datetime(2026, 11, 25, 23, 59, tzinfo=UTC)
    batcher.add(NpmPackage, row("a", today), 1)
    batcher.add(NpmPackage, row("b", today + timedelta(minutes=2)), 2)
    assert sorted(day.isoformat() for _, day in batcher.open) == ["2026-11-25", "2026-11-26"]
    assert batcher.oldest_receipt() == 1


def test_idle_batches_are_taken():
    batcher = Batcher(max_records=10, max_bytes=10**9, idle_seconds=5)
    batcher.add(NpmPackage, row("a"), 1)
    batch = next(iter(batcher.open.values()))
    assert batcher.take_idle(now=batch.last_added + 1) == []
    assert batcher.take_idle(now=batch.last_added + 5) == [batch]
    assert batcher.oldest_receipt() is None
