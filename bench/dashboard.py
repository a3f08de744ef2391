"""How long the status dashboard (``GET /`` of ``scrapy serve``) takes to load on a store of 1 M records.

The store is built cheaply and honestly for what the dashboard reads: the partition index and the catalogs
are written through the platform's index (:class:`crawler.pipelines.index.PartitionIndex`) for objects of
``--batch`` records each (the default ``BATCH_MAX_RECORDS``), spread over ``--days`` days and over every
namespace of every declared source; the metadata DB gets ``--runs`` runs per source (with Scrapy-sized stats),
dead letters and cursors. No Parquet file is written: the dashboard never opens one (the bench checks that by
leaving them out: a read would fail). The same is timed on a store of ``--baseline`` records, in the same
process, and the ratio printed: the load time should not grow with the number of records.

    python -m bench.dashboard                    # 1,000,000 records (~1 min to build)
    python -m bench.dashboard --records 200000 --repeat 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient

from crawler.dashboard import dashboard_html
from crawler.meta import MetaDB, PartitionRow
from crawler.pipelines.index import PartitionIndex, iso_utc
from crawler.query.api import ApiConfig, create_app
from crawler.sources import all_sources
from crawler.storage import open_store
from crawler.storage.layout import batch_keys

REASONS = ("http_503", "http_404", "parse_error: unexpected shape", "too_large", "timeout")


def build(folder: Path, records: int, *, batch: int, days: int, runs: int, dead_letters: int) -> str:
    """A store and metadata DB of ``records`` records; returns the metadata DB URL."""
    rng = random.Random(7)
    store = open_store(str(folder))
    url = f"sqlite:///{folder / '_meta' / 'meta.db'}"
    namespaces = [record.namespace for source in all_sources().values() for record in source.records]
    now = datetime.now(UTC)
    with MetaDB.connect(url) as meta:
        rows: list[PartitionRow] = []
        objects = max(records // batch, 1)
        for n in range(objects):
            namespace = namespaces[n % len(namespaces)]
            count = batch if n < objects - 1 else records - batch * (objects - 1)
            moment = now - timedelta(days=days * n / objects, minutes=rng.random())
            day = moment.date()
            parquet, ndjson = batch_keys(namespace, day, unix_ts=int(moment.timestamp()), object_id=f"{n:08x}")
            stamp = iso_utc(moment)
            for key, kind, size in ((parquet, "parquet", count * 180), (ndjson, "ndjson", count * 1400)):
                rows.append(
                    PartitionRow(
                        key, namespace, day.year, day.month, day.day, kind, count, size, stamp, stamp, f"run-{n}"
                    )
                )
        meta.add_partitions(rows)
        index = PartitionIndex(store, meta)
        for namespace in namespaces:
            index.write_catalog(namespace)
        stats = {f"downloader/response_status_count/{code}": 100 for code in range(200, 600, 7)}
        for source in all_sources():
            for n in range(runs):
                run_id = f"{source}-{n}"
                meta.start_run(run_id, source, source, {"mode": "incremental"}, "bench")
                meta.finish_run(run_id, "finished" if n % 9 else "shutdown", 5000 + n, n % 3, n % 5, 10**6, stats)
            for key in ("default", "serial", "since"):
                meta.save_cursor(source, str(rng.randrange(10**9)), key)
            for n in range(dead_letters):
                meta.add_failed(source, REASONS[n % len(REASONS)], url=f"http://127.0.0.1:9/{n}", payload=b"x" * 200)
    return url


def time_load(folder: Path, url: str, repeat: int) -> tuple[list[float], list[float], int]:
    """Seconds per dashboard_html call, and per ``GET /`` through the app; the page's size."""
    store = open_store(str(folder))
    dashboard_html(store, url)  # untimed: imports and first reads happen once, before either store is timed
    direct = []
    for _ in range(repeat):
        started = time.perf_counter()
        page = dashboard_html(store, url)
        direct.append(time.perf_counter() - started)
    config = ApiConfig(storage_uri=str(folder), api_keys=("bench",), isolation="thread", workers=1, meta_db_url=url)
    served = []
    with TestClient(create_app(config, store=store)) as client:
        client.get("/", headers={"X-API-Key": "bench"})  # untimed, as above
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get("/", headers={"X-API-Key": "bench"})
            served.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:500]
    return direct, served, len(page)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="records of the baseline store")
    parser.add_argument("--batch", type=int, default=1000, help="records per stored object (BATCH_MAX_RECORDS)")
    parser.add_argument("--days", type=int, default=90, help="days the records are spread over")
    parser.add_argument("--runs", type=int, default=200, help="runs per source in the metadata DB")
    parser.add_argument("--dead-letters", type=int, default=2000, help="waiting dead letters per source")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results = {}
    for label, records in (("baseline", args.baseline), ("store", args.records)):
        with tempfile.TemporaryDirectory(prefix="bench-dashboard-") as tmp:
            started = time.perf_counter()
            url = build(
                Path(tmp), records, batch=args.batch, days=args.days, runs=args.runs, dead_letters=args.dead_letters
            )
            built = time.perf_counter() - started
            direct, served, size = time_load(Path(tmp), url, args.repeat)
            results[label] = statistics.median(served)
            objects = 2 * max(records // args.batch, 1)
            print(
                f"{label:8} {records:>9,} records in {objects:,} objects (built in {built:.1f} s): "
                f"dashboard_html median {statistics.median(direct) * 1000:.0f} ms (max {max(direct) * 1000:.0f}), "
                f"GET / median {statistics.median(served) * 1000:.0f} ms (max {max(served) * 1000:.0f}), "
                f"page {size / 1024:.0f} KB"
            )
    ratio = results["store"] / results["baseline"]
    verdict = "PASS" if results["store"] < 1.0 else "FAIL"
    print(
        f"GET / on {args.records:,} records: {results['store'] * 1000:.0f} ms "
        f"({ratio:.2f} x the baseline's): {verdict} (< 1 s)"
    )


if __name__ == "__main__":
    main()
