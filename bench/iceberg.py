"""Iceberg tables: what committing every batch costs, and reading through the tables vs the partition index.

    python -m bench.iceberg [--packages 5000] [--repeat 3] [--records 1000000] [--only crawl,query]

``crawl``: the npm crawl of ``bench.npm_crawl`` (the platform contender: ``scrapy crawl npm`` over a loopback
fake registry, ``--packages`` packuments), run with ``ICEBERG_ENABLED=false`` and ``true`` interleaved
``--repeat`` times; each side's best run (other load on a shared machine only slows a run down). The target:
with commits on, at most 10 % slower end to end.

``query``: ``--records`` synthetic npm records (``bench.query_layout``'s generator: 1,000-record batches, a
fifth re-ingested versions) written through the platform's writer and index with an Iceberg table in a SQLite
catalog, timing every batch's commit (the latency a batch waits on the metadata thread); then the same
queries through the views over ``catalog.json`` (what ``scrapy query`` reads), over ``r2_partitions`` and
over the table's current snapshot (planned by PyIceberg), with the time to build each connection (median of
5 after a warm-up). Offline, in a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.npm_crawl import Bench, clean_env, fake_registry, write_names
from bench.query_layout import QUERIES, synthetic_rows, timed
from crawler.config import IcebergConfig
from crawler.meta import MetaDB
from crawler.pipelines.batching import Batch
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter
from crawler.query.views import connect
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import open_store
from crawler.storage.iceberg import open_tables

#: commits on may cost at most this share of the crawl's throughput
TARGET_SLOWDOWN = 0.10


def crawl(packages: int, repeat: int, seed: int) -> dict[str, Any]:
    """Items/s of the npm crawl with Iceberg commits off and on (best of ``repeat`` interleaved runs)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-iceberg-"))
    env = clean_env()
    best: dict[str, Any] = {}
    try:
        names = workdir / "names.txt"
        write_names(names, packages)
        with fake_registry(packages, seed, workdir, {**env, "PYTHONPATH": str(Path(__file__).parent.parent)}) as fake:
            benches = {
                side: Bench(
                    packages=packages,
                    names_file=names,
                    workdir=workdir / side,
                    fake=fake,
                    base_env=env,
                    timeout=300 + 0.02 * packages,
                    raw_concurrency=64,
                    platform_settings=[f"ICEBERG_ENABLED={'true' if side == 'on' else 'false'}"],
                    platform_shards=1,
                    platform_env={},
                    cprofile_dir=None,
                )
                for side in ("off", "on")
            }
            for attempt in range(1, repeat + 1):
                for side, bench in benches.items():
                    (workdir / side).mkdir(exist_ok=True)
                    result = bench.run("platform")
                    complete = result.complete(packages)
                    print(
                        f"crawl, commits {side} ({attempt}/{repeat}): {result.items} items in "
                        f"{result.usage.wall_s:.1f} s = {result.items_per_s:.0f} items/s, CPU "
                        f"{result.usage.user_s + result.usage.sys_s:.1f} s{'' if complete else '  (INCOMPLETE)'}",
                        flush=True,
                    )
                    if complete and (side not in best or result.items_per_s > best[side].items_per_s):
                        best[side] = result
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if len(best) < 2:
        raise SystemExit("a side never completed its crawl: no figure")
    ratio = best["on"].items_per_s / best["off"].items_per_s
    return {
        "items_per_s_off": best["off"].items_per_s,
        "items_per_s_on": best["on"].items_per_s,
        "cpu_s_per_1000_off": best["off"].cpu_per_1000,
        "cpu_s_per_1000_on": best["on"].cpu_per_1000,
        "slowdown": 1 - ratio,
    }


def query(records: int, seed: int) -> dict[str, Any]:
    """Commit latency per batch while writing ``records``, then query latency index vs Iceberg."""
    root = Path(tempfile.mkdtemp(prefix="bench-iceberg-query-"))
    try:
        store = open_store(str(root / "data"))
        url = f"sqlite:///{root / 'meta.db'}"
        meta = MetaDB.connect(url)
        tables = open_tables(IcebergConfig(enabled=True, catalog_uri=url), store)
        assert tables is not None
        writer, index = BatchWriter(store), PartitionIndex(store, meta)
        commits, rest = [], []
        for batch_no, (when, rows) in enumerate(synthetic_rows(records, 1, seed)):
            batch = Batch(NpmPackage, when.date())
            for i, row in enumerate(rows):
                row.update(_source="npm", _ingested_at=when + timedelta(microseconds=i), _run_id=f"run-{batch_no}")
                row["_schema_version"] = 1
                batch.add(row, i)
            started = time.perf_counter()
            objects = writer.write(batch)
            written = time.perf_counter()
            tables.add("npm", [o.key for o in objects if o.format == "parquet"])
            committed = time.perf_counter()
            index.record(objects, f"run-{batch_no}")
            commits.append((committed - written) * 1000)
            rest.append((written - started + time.perf_counter() - committed) * 1000)
        last = commits[-100:]
        figures: dict[str, Any] = {
            "batches": len(commits),
            "commit_ms_median": statistics.median(commits),
            "commit_ms_p95": statistics.quantiles(commits, n=20)[-1],
            "commit_ms_median_last_100": statistics.median(last),
            "write_and_index_ms_median": statistics.median(rest),
        }
        build = {}
        connections = {}
        for name, make in (
            ("catalog", lambda: connect(store)),  # what `scrapy query` reads: catalog.json, with key ranges
            ("index", lambda: connect(store, meta)),  # r2_partitions
            ("iceberg", lambda: connect(store, tables=tables)),
        ):
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                con = make()
                samples.append((time.perf_counter() - started) * 1000)
            build[name] = statistics.median(samples)
            connections[name] = con
        figures["connect_ms"] = build
        figures["query_ms"] = {
            label: {name: timed(con, sql) for name, con in connections.items()} for label, sql in QUERIES.items()
        }
        counts = {name: con.execute("SELECT count(*) FROM npm_package").fetchone() for name, con in connections.items()}
        assert counts["catalog"] == counts["index"] == counts["iceberg"], counts
        meta.close()
        return figures
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.iceberg", description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=5000, help="packuments per crawl")
    parser.add_argument("--repeat", type=int, default=3, help="crawls per side, interleaved; the best counts")
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the query benchmark")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default="crawl,query", help="crawl, query or both (comma-separated)")
    args = parser.parse_args()
    parts = {part.strip() for part in args.only.split(",")}
    if "query" in parts:
        figures = query(args.records, args.seed)
        print(
            f"\ncommits: {figures['batches']} batches of 1000 records; commit latency median "
            f"{figures['commit_ms_median']:.1f} ms, p95 {figures['commit_ms_p95']:.1f} ms, median of the last 100 "
            f"{figures['commit_ms_median_last_100']:.1f} ms (write + index of a batch: "
            f"{figures['write_and_index_ms_median']:.1f} ms)"
        )
        print(f"\n{'':<16}{'catalog.json':>15}{'r2_partitions':>15}{'Iceberg':>15}{'Iceberg/catalog':>17}")
        for label, by in [("build views", figures["connect_ms"]), *figures["query_ms"].items()]:
            print(
                f"{label:<16}{by['catalog']:>12.1f} ms{by['index']:>12.1f} ms{by['iceberg']:>12.1f} ms"
                f"{by['iceberg'] / by['catalog']:>17.2f}"
            )
    if "crawl" in parts:
        figures = crawl(args.packages, args.repeat, args.seed)
        verdict = "PASS" if figures["slowdown"] <= TARGET_SLOWDOWN else "FAIL"
        print(
            f"\ncrawl of {args.packages} packuments, best of {args.repeat}: commits off "
            f"{figures['items_per_s_off']:.0f} items/s, on {figures['items_per_s_on']:.0f} items/s: "
            f"{figures['slowdown']:+.1%} slower (target <= {TARGET_SLOWDOWN:.0%}: {verdict}); CPU per 1000 items "
            f"{figures['cpu_s_per_1000_off']:.2f} s vs {figures['cpu_s_per_1000_on']:.2f} s"
        )


if __name__ == "__main__":
    main()
