"""The dashboard's data and plots without a browser: built from an index written through the platform's
:class:`PartitionIndex`, a metadata DB and (for the distributed panel) the machine's Redis."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from crawler.dashboard import dashboard_html
from crawler.dashboard.data import gather, open_meta
from crawler.dashboard.svg import Bar, bar_rows, column_chart, human_seconds, nice_ceiling
from crawler.meta import MetaDB
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import StoredObject
from crawler.query.api import ApiConfig, create_app
from crawler.sources import all_sources
from crawler.storage import open_store
from crawler.storage.layout import batch_keys

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def stored_objects(namespace: str, ingested: list[tuple[datetime, int]]) -> list[StoredObject]:
    """A Parquet object and its NDJSON twin per (time, records); no file is written (the dashboard reads none)."""
    objects = []
    for n, (moment, records) in enumerate(ingested):
        parquet, ndjson = batch_keys(namespace, moment.date(), unix_ts=int(moment.timestamp()), object_id=f"{n:04x}")
        for key, kind, size in ((parquet, "parquet", 100 * records), (ndjson, "ndjson", 700 * records)):
            objects.append(StoredObject(key, namespace, moment.date(), kind, records, size, moment, moment, 1))
    return objects


def values(page: str, chart: str) -> dict[str, str]:
    """label -> data-value of each bar of ``chart``."""
    svg = re.search(rf'<svg [^>]*data-chart="{re.escape(chart)}".*?</svg>', page, re.S)
    assert svg, f"no chart {chart}"
    return dict(re.findall(r'<rect class="bar [^"]*"[^>]*data-label="([^"]*)" data-value="([^"]*)"', svg.group(0)))


TTL_DAYS = 10


@pytest.fixture
def with_ttl(monkeypatch: pytest.MonkeyPatch) -> tuple:
    """The first source, as if it declared a freshness TTL of :data:`TTL_DAYS` days, and its first namespace."""
    sources = dict(all_sources())
    name = sorted(sources)[0]
    ttl = timedelta(days=TTL_DAYS).total_seconds()
    source = dataclasses.replace(sources[name], policy=dataclasses.replace(sources[name].policy, freshness_ttl=ttl))
    sources[name] = source
    monkeypatch.setattr("crawler.dashboard.data.all_sources", lambda: sources)
    return source, source.records[0].namespace


def test_records_per_day_bytes_freshness_and_dead_letters_from_the_index(tmp_path: Path, with_ttl):
    source, namespace = with_ttl
    store = open_store(str(tmp_path))
    url = f"sqlite:///{tmp_path / '_meta' / 'meta.db'}"
    old = NOW - timedelta(days=TTL_DAYS + 2)  # older than the TTL
    ingested = [(old, 40), (NOW - timedelta(days=1), 25), (NOW - timedelta(hours=1), 5), (NOW - timedelta(hours=2), 7)]
    ingested.append((NOW - timedelta(days=45), 3))  # before the 30 days plotted
    with MetaDB.connect(url) as meta:
        PartitionIndex(store, meta).record(stored_objects(namespace, ingested), "run-1")
        meta.start_run("run-1", source.name, source.name, {}, "host")
        meta.finish_run("run-1", "finished", 77, 0, 3, 0, {})
        meta.add_failed(source.name, "http_503", url="http://127.0.0.1:9/a")
        meta.add_failed(source.name, "not_found: no page at /x", url="http://127.0.0.1:9/x")
        meta.add_failed(source.name, "not_found: no page at /y", url="http://127.0.0.1:9/y")
        replayed = meta.add_failed(source.name, "http_500")
        meta.mark_replayed([replayed])
        meta.save_cursor(source.name, "42", "serial")
        assert meta.partition_totals(namespace) == {"objects": 10, "records": 80, "bytes": 80 * 800}
        (state,) = [s for s in gather(meta, store, now=NOW) if s.source is source]
    ns = next(n for n in state.namespaces if n.namespace == namespace)
    assert ns.records == 80 and ns.bytes == 80 * 800
    assert ns.within_ttl == 37  # the 43 records older than the TTL are not
    per_day = dict(ns.per_day)
    assert per_day[NOW.date()] == 12 and per_day[(NOW - timedelta(days=1)).date()] == 25 and per_day[old.date()] == 40
    assert len(ns.per_day) == 30 and ns.per_day[-1][0] == NOW.date()  # the last 30 days, empty days as 0
    assert sum(per_day.values()) == 77 and per_day[(NOW - timedelta(days=2)).date()] == 0
    assert state.dead_letters == [("not_found", 2), ("http_503", 1)]  # by kind; the replayed one is not waiting
    assert [c["key"] for c in state.cursors] == ["serial"]
    assert state.runs[0]["items"] == 77 and state.runs[0]["error_rate"] == round(3 / 80, 4)

    page = dashboard_html(store, url, now=NOW)
    days = values(page, f"{namespace}/per-day")
    assert days[NOW.strftime("%m-%d")] == "12" and days[(NOW - timedelta(days=1)).strftime("%m-%d")] == "25"
    assert f'data-key="{NOW.date().isoformat()}"' in page
    assert values(page, f"{source.name}/dead-letters") == {"not_found": "2", "http_503": "1"}
    assert values(page, f"{source.name}/bytes")[namespace] == str(80 * 800)
    assert "37 of 80 within the TTL" in page and 'class="marker"' in page  # the TTL line on the freshness plot
    freshness = values(page, f"{source.name}/freshness")
    assert freshness[f"{namespace} oldest"] == str(45 * 86400) and freshness[f"{namespace} newest"] == "3600"
    oldest = re.search(rf'<rect class="bar (\w+)"[^>]*data-label="{re.escape(namespace)} oldest"', page)
    assert oldest and oldest.group(1) == "bad"  # the oldest record is past the TTL: drawn red
    assert "<script" not in page


def test_the_dashboard_creates_no_metadata_db_on_an_empty_store(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'data' / '_meta' / 'meta.db'}"
    assert open_meta(url) is None
    page = dashboard_html(open_store(str(tmp_path / "data")), url)
    assert page.count('class="source idle"') == len(all_sources())
    assert not (tmp_path / "data" / "_meta").exists()  # no metadata DB made by looking


def test_the_route_is_behind_the_key(tmp_path: Path):
    config = ApiConfig(storage_uri=str(tmp_path), api_keys=("k1",), isolation="thread", workers=1)
    with TestClient(create_app(config)) as client:
        refused = client.get("/")
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        assert client.get("/", auth=("me", "k1")).status_code == 200  # a browser's Basic prompt: the key as password
        page = client.get("/", headers={"X-API-Key": "k1"})
        assert page.status_code == 200 and "Ingestion status" in page.text
        assert all(f'data-source="{name}"' in page.text for name in all_sources())


def test_a_distributed_crawl_shows_its_workers_and_queue(tmp_path: Path, redis_prefix: str):
    import redis

    from crawler.distributed.coordinator import Coordinator, Keys
    from tests.conftest import REDIS_TEST_URL

    name = sorted(all_sources())[0]
    worker = Coordinator(redis.Redis.from_url(REDIS_TEST_URL), Keys.for_spider(redis_prefix, name), worker="w1")
    worker.join("run-1")
    for request in (b"a", b"b", b"c"):
        worker.server.zadd(worker.keys.queue, {request: 0})
    worker.pop()
    url = f"sqlite:///{tmp_path / '_meta' / 'meta.db'}"
    MetaDB.connect(url).close()
    config = ApiConfig(
        storage_uri=str(tmp_path),
        api_keys=("k1",),
        isolation="thread",
        workers=1,
        redis_url=REDIS_TEST_URL,
        distributed_key_prefix=redis_prefix,
    )
    with TestClient(create_app(config)) as client:
        page = client.get("/", headers={"X-API-Key": "k1"}).text
    assert values(page, f"{name}/distributed") == {"live workers": "1", "queued": "2", "leased": "1"}
    # Redis down: the page still answers, and says so
    config = dataclasses.replace(config, redis_url="redis://127.0.0.1:9/0")
    with TestClient(create_app(config)) as client:
        page = client.get("/", headers={"X-API-Key": "k1"}).text
    assert "Redis is unreachable" in page


def test_svg_charts():
    assert [nice_ceiling(v) for v in (0, 3, 7, 10, 11, 240, 999)] == [1, 5, 10, 10, 20, 250, 1000]
    assert human_seconds(42) == "42 s" and human_seconds(7200) == "2 h" and human_seconds(3 * 86400) == "3 d"
    columns = column_chart([Bar("a<b", 3), Bar("c", 7, "bad")], name="x/y")
    assert 'data-chart="x/y"' in columns and 'data-label="a&lt;b" data-value="3"' in columns
    assert '<rect class="bar bad"' in columns and "a<b" not in columns
    heights = [
        float(h)
        for h in re.findall(r'<rect class="bar [^"]*" x="[^"]*" y="[^"]*" width="[^"]*" height="([^"]*)"', columns)
    ]
    assert heights[1] > heights[0] > 0 and abs(heights[1] / heights[0] - 7 / 3) < 0.05  # to scale
    rows = bar_rows([Bar("one", 1.5)], name="r", marker=(3, "limit"))
    assert 'data-value="1.5"' in rows and ">limit<" in rows
    assert "nothing yet" in column_chart([], name="e")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_sums_in_sql_on_every_backend(tmp_path: Path, backend: str, request: pytest.FixtureRequest):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'meta.db'}"
    namespace = next(iter(all_sources().values())).records[0].namespace
    store = open_store(str(tmp_path / "data"))
    with MetaDB.connect(url) as meta:
        assert meta.partition_totals(namespace) == {"objects": 0, "records": 0, "bytes": 0}
        ingested = [(NOW - timedelta(days=3), 10), (NOW - timedelta(hours=1), 4)]
        PartitionIndex(store, meta).record(stored_objects(namespace, ingested), "run-1")
        assert meta.partition_totals(namespace) == {"objects": 4, "records": 14, "bytes": 14 * 800}
        since = meta.partition_totals(namespace, ingested_since="2026-11-29T00:00:00.000000Z")
        assert since == {"objects": 2, "records": 4, "bytes": 4 * 800}
        for reason in ("http_503", "http_503", "too_large"):
            meta.add_failed("some-source", reason)
        meta.mark_replayed([meta.add_failed("some-source", "too_large")])
        assert meta.count_failed_by_reason("some-source") == {"http_503": 2, "too_large": 1}
        assert meta.count_failed_by_reason("some-source", include_replayed=True) == {"http_503": 2, "too_large": 2}
        assert meta.count_failed_by_reason("another-source") == {}


def test_an_unreachable_metadata_db_is_one_error(tmp_path: Path):
    config = ApiConfig(
        storage_uri=str(tmp_path),
        api_keys=("k1",),
        isolation="thread",
        workers=1,
        meta_db_url="postgresql://nobody@127.0.0.1:9/meta?connect_timeout=2",
    )
    with TestClient(create_app(config)) as client:
        response = client.get("/", headers={"X-API-Key": "k1"})
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable" and "META_DB_URL" in response.json()["detail"]
