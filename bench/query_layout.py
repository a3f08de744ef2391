"""Query latency over the stored layout: uncompacted batches vs compacted Parquet vs raw NDJSON.

``python -m bench.query_layout [--records 1000000] [--days 30]`` writes synthetic npm records through the
platform's own writer (1,000-record batches, NDJSON + Parquet, indexed), about a fifth of them re-ingested
versions of earlier packages, then times the same queries over the three layouts, compacts with the
platform's compactor, and prints latencies (median of 5 after a warm-up), file counts, bytes, compaction
throughput, and PASS/FAIL against the targets (simple filter ≤ 100 ms, group-by ≤ 300 ms on the
uncompacted batches and on compacted Parquet; Parquet ≤ 1/6 of NDJSON bytes). The Parquet layouts are
queried the way the platform queries them: through :func:`crawler.query.views.connect`, one connection
kept for all the queries of a layout. Everything happens in a temporary folder, offline.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter
from crawler.query.views import connect
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store
from crawler.storage.compaction import Compactor, stored_days

LICENSES = ["MIT", "ISC", "Apache-2.0", "BSD-3-Clause", "BSD-2-Clause", "MPL-2.0", None]
WORDS = ("fast tiny parser cli react vue plugin webpack babel util async stream json yaml http test").split()  # noqa: SIM905
QUERIES = {
    "simple filter": "SELECT name, version, license FROM npm_package WHERE name = 'pkg-0012345'",
    "group-by": "SELECT license, count(*) AS n, avg(versions_count) FROM npm_package GROUP BY license",
    "full scan": "SELECT count(*), sum(versions_count), count(DISTINCT author_email) FROM npm_package_history",
}
TARGETS_MS = {"simple filter": 100, "group-by": 300}


def synthetic_rows(count: int, days: int, seed: int) -> list[tuple[datetime, list[dict]]]:
    """Batches of rows (ingestion time, rows); ~20 % are newer versions of packages seen before."""
    rng = random.Random(seed)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    distinct = int(count * 0.8)
    batches, rows = [], []
    for i in range(count):
        n = i if i < distinct else rng.randrange(distinct)
        row = NpmPackage(
            name=f"pkg-{n:07d}",
            version=f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
            description=" ".join(rng.choices(WORDS, k=8)),
            author_name=f"author {n % 5000}",
            author_email=f"dev{n % 5000}@example.test",
            license=rng.choice(LICENSES),
            keywords=rng.sample(WORDS, 3),
            dependencies={f"pkg-{rng.randrange(distinct):07d}": f"^{rng.randint(1, 9)}.0.0" for _ in range(4)},
            repository_url=f"https://github.com/owner{n % 9000}/pkg-{n}",
            versions_count=rng.randint(1, 120),
            dist_tags={"latest": "1.0.0"},
            manifest={"name": f"pkg-{n:07d}", "main": "index.js", "scripts": {"test": "node test.js"}},
        ).to_row()
        rows.append(row)
        if len(rows) == 1000:
            when = start + timedelta(days=(i * days) // count, seconds=i % 86000)
            batches.append((when, rows))
            rows = []
    if rows:
        batches.append((start + timedelta(days=days - 1), rows))
    return batches


def write(store, meta, batches) -> None:
    writer, index = BatchWriter(store), PartitionIndex(store, meta)
    for batch_no, (when, rows) in enumerate(batches):
        batch = Batch(NpmPackage, when.date())
        for i, row in enumerate(rows):
            row.update(
                _source="npm",
                _ingested_at=when + timedelta(microseconds=i),
                _run_id=f"run-{batch_no}",
                _schema_version=1,
            )
            batch.add(row, i)
        index.record(writer.write(batch), f"run-{batch_no}")


def ndjson_connection(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(
        "CREATE VIEW npm_package_history AS SELECT * FROM read_json("
        f"'{root}/npm/*/*/*/*.ndjson', format = 'newline_delimited', hive_partitioning = true)"
    )
    con.execute(
        "CREATE VIEW npm_package AS SELECT * FROM npm_package_history "
        "QUALIFY row_number() OVER (PARTITION BY name ORDER BY _ingested_at DESC, _run_id DESC) = 1"
    )
    return con


def timed(con: duckdb.DuckDBPyConnection, sql: str, repeat: int = 5, warm_up: bool = True) -> float:
    if warm_up:
        con.execute(sql).fetchall()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        con.execute(sql).fetchall()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def layout_size(root: Path, suffix: str) -> tuple[int, int]:
    files = [p for p in (root / "npm").rglob(f"*{suffix}")]
    return len(files), sum(p.stat().st_size for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        root = Path(tmp) / "data"
        store, meta = open_store(str(root)), MetaDB.connect(f"sqlite:///{tmp}/meta.db")
        started = time.perf_counter()
        write(store, meta, synthetic_rows(args.records, args.days, args.seed))
        print(f"wrote {args.records:,} records in {time.perf_counter() - started:.1f} s")
        ndjson_files, ndjson_bytes = layout_size(root, ".ndjson")
        batch_files, batch_bytes = layout_size(root, ".parquet")

        results: dict[str, dict[str, float]] = {}
        results["NDJSON"] = {
            name: timed(ndjson_connection(root), sql, 1, warm_up=False) for name, sql in QUERIES.items()
        }
        con = connect(store)
        results["Parquet batches"] = {name: timed(con, sql) for name, sql in QUERIES.items()}

        started = time.perf_counter()
        report = Compactor(store, meta).compact(NpmPackage, stored_days(store, "npm"))
        compaction_s = time.perf_counter() - started
        compacted_files, compacted_bytes = layout_size(root, ".parquet")
        con = connect(store)
        results["Parquet compacted"] = {name: timed(con, sql) for name, sql in QUERIES.items()}

        print(f"\n{'layout':<20}{'files':>8}{'bytes':>14}" + "".join(f"{q + ' ms':>18}" for q in QUERIES))
        sizes = {
            "NDJSON": (ndjson_files, ndjson_bytes),
            "Parquet batches": (batch_files, batch_bytes),
            "Parquet compacted": (compacted_files, compacted_bytes),
        }
        for layout, figures in results.items():
            files, size = sizes[layout]
            print(f"{layout:<20}{files:>8}{size:>14,}" + "".join(f"{figures[q]:>18.1f}" for q in QUERIES))
        print(
            f"\ncompaction: {report.input_rows:,} rows in {report.input_files} files -> {report.output_rows:,} rows "
            f"in {report.output_files} files, {compaction_s:.1f} s = {report.input_rows / compaction_s:,.0f} rows/s, "
            f"{report.input_bytes / compaction_s / 1e6:.1f} MB/s"
        )
        for layout, label in (("Parquet batches", "Parquet batches"), ("Parquet compacted", "compacted Parquet")):
            for query, target in TARGETS_MS.items():
                took = results[layout][query]
                verdict = "PASS" if took <= target else "FAIL"
                print(f"{query} on {label}: {took:.1f} ms (target <= {target} ms) {verdict}")
        ratio = batch_bytes / ndjson_bytes
        print(f"Parquet / NDJSON bytes: {ratio:.3f} (target <= 0.167) {'PASS' if ratio <= 1 / 6 else 'FAIL'}")


if __name__ == "__main__":
    main()
