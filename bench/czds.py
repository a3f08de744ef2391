"""Benchmark the CZDS zone-file path: parse speed, memory, end to end, the day-over-day diff, sizes.

    python -m bench.czds [--records 1000000] [--large 10000000] [--small 20000] [--work DIR] [--json out.json]

Generates registry-format zone files (``tests.fakes.czds.write_zone``: two NS per name, a DS for every
tenth, some glue; about 2.1 records per name) of ``--small``, ``--records`` and ``--large`` records, two
consecutive zone dates of the large one (1 % of names changed), and caches them in ``--work``. Every figure
comes from a child process reaped with ``os.wait4`` (its own CPU time and peak RSS), in one run:

* parse: the source's reader (``crawler.spiders.czds.zonefile.delegations``) over each file, one core;
  against dnspython's zone reader on the small file, and ``zcat | wc -l`` on the same files; and the
  alternatives it was chosen over (a Python line loop, DuckDB's CSV reader, gzip vs ISA-L vs zlib-ng);
* end to end: ``scrapy crawl czds`` against the fake in its own process (download, raw kept, Parquet
  written, indexed) for the 1 M file and both dates of the large one, with its peak RSS;
* diff: the day-over-day changes of the two large dates (a merge of the two sorted snapshots, two batches
  in memory) against the time to parse one of them;
* size: Parquet of the ``domains`` snapshot against the gzip zone file it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.npm_crawl import REPO_ROOT, Usage, clean_env, run_measured

#: issue targets
TARGET_PARSE_RATE = 1_500_000  # records/s, one core
TARGET_VS_DNSPYTHON = 100
TARGET_VS_ZCAT = 0.5
TARGET_E2E_VS_PARSE = 0.5
TARGET_RSS_MB = 300
TARGET_DIFF_VS_PARSE = 2.0
TARGET_PARQUET_VS_GZIP = 0.25
RECORDS_PER_NAME = 2.11  # write_zone: 2 NS + 0.1 DS + 0.01 A per name
CHURN = 0.01


# -- children: each runs in its own process, measured by wait4 -------------------------------------------


def child(kind: str, *args: str) -> None:
    started, cpu_started = time.perf_counter(), time.process_time()
    result: dict[str, Any] = {}
    if kind == "parse":
        from crawler.spiders.czds.zonefile import ZoneStats, delegations

        stats = ZoneStats()
        for _ in delegations(args[0], args[1], stats):
            pass
        result = {"records": stats.records, "domains": stats.domains, "syntax": stats.syntax}
    elif kind == "decompress":
        import gzip

        from isal import igzip
        from zlib_ng import gzip_ng

        opener = {"gzip": gzip.open, "isal": igzip.open, "zlib-ng": gzip_ng.open}[args[1]]
        size = 0
        with opener(args[0], "rb") as stream:
            while chunk := stream.read(4 << 20):
                size += len(chunk)
        result = {"bytes": size}
    elif kind == "loop":  # the same delegations as the reader's, built by a plain Python loop
        import pyarrow as pa
        from isal import igzip

        origin = args[1]
        records = domains = 0
        fqdns: list[str] = []
        servers: list[list[str]] = []
        signed: list[bool] = []
        with igzip.open(args[0], "rt") as stream:
            for line in stream:
                records += 1
                owner, _ttl, _class, kind_, rdata = line.rstrip("\n").split("\t", 4)
                if owner == origin or kind_ not in ("ns", "ds"):
                    continue
                name = owner.rstrip(".").lower()
                if not fqdns or fqdns[-1] != name:
                    fqdns.append(name)
                    servers.append([])
                    signed.append(False)
                if kind_ == "ns":
                    servers[-1].append(rdata.rstrip(".").lower())
                else:
                    signed[-1] = True
                if len(fqdns) >= 100_000:
                    domains += pa.table({"fqdn": fqdns[:-1], "ns": servers[:-1], "ds": signed[:-1]}).num_rows
                    fqdns, servers, signed = fqdns[-1:], servers[-1:], signed[-1:]
        domains += pa.table({"fqdn": fqdns, "ns": servers, "ds": signed}).num_rows
        result = {"records": records, "domains": domains}
    elif kind == "duckdb":
        import duckdb

        connection = duckdb.connect(config={"threads": 1, "memory_limit": "256MB"})
        query = (
            "SELECT count(*), count(DISTINCT owner) FILTER (WHERE type = 'ns') FROM read_csv(?, delim='\t', "
            "header=false, quote='', escape='', columns={'owner':'VARCHAR','ttl':'VARCHAR','class':'VARCHAR',"
            "'type':'VARCHAR','rdata':'VARCHAR'})"
        )
        records, domains = connection.execute(query, [args[0]]).fetchone()
        result = {"records": records, "domains": domains}
    elif kind == "dnspython":
        import gzip

        import dns.zone

        with gzip.open(args[0], "rt") as stream:
            zone = dns.zone.from_file(stream, origin=args[1], relativize=False, check_origin=False)
        records = sum(len(rdataset) for node in zone.nodes.values() for rdataset in node.rdatasets)
        result = {"records": records}
    elif kind == "diff":
        from crawler.spiders.czds.changes import changes

        rows = sum(batch.num_rows for batch in changes(args[0], args[1], spill_directory=args[2]))
        result = {"changes": rows}
    # the work itself: without the interpreter's start and the imports
    result["inner_wall_s"] = time.perf_counter() - started
    result["inner_cpu_s"] = time.process_time() - cpu_started
    print(json.dumps(result))


def measure(kind: str, *args: str, work: Path) -> tuple[Usage, dict[str, Any]]:
    out = work / f"child-{kind}.out"
    with open(out, "w") as stdout, open(work / f"child-{kind}.err", "w") as stderr:
        usage = run_measured(
            [sys.executable, "-m", "bench.czds", "--child", kind, *args],
            env={**clean_env(), "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT,
            timeout=1800,
            stdout=stdout,
            stderr=stderr,
        )
    if usage.returncode != 0:
        raise RuntimeError(f"{kind} failed: {(work / f'child-{kind}.err').read_text()[-2000:]}")
    return usage, json.loads(out.read_text().strip().splitlines()[-1])


def zcat_lines(path: Path, work: Path) -> tuple[Usage, int]:
    out = work / "zcat.out"
    with open(out, "w") as stdout, open(work / "zcat.err", "w") as stderr:
        usage = run_measured(
            ["sh", "-c", f"zcat '{path}' | wc -l"],
            env=clean_env(),
            cwd=work,
            timeout=1800,
            stdout=stdout,
            stderr=stderr,
        )
    return usage, int(out.read_text().split()[0])


# -- zone files and the fake ---------------------------------------------------------------------------


def zone_file(work: Path, records: int, day: int = 0) -> Path:
    from tests.fakes.czds import write_zone

    names = int(records / RECORDS_PER_NAME)
    path = work / f"bench-{records}-day{day}.zone.gz"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".part")
        write_zone(partial, "bench", names, day=day, churn=int(names * CHURN))
        partial.rename(path)
        print(f"  generated {path.name} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")
    return path


@contextlib.contextmanager
def fake_czds(path: Path, day: str):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.czds", "--port", "0", "--zone", f"bench={path}@{day}"],
        cwd=REPO_ROOT,
        env={**clean_env(), "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["url"]
    finally:
        process.terminate()
        process.wait(timeout=30)


def crawl(url: str, data: Path, work: Path, label: str) -> Usage:
    from tests.fakes.czds import PASSWORD, USERNAME

    env = {
        **clean_env(),
        "PYTHONPATH": str(REPO_ROOT),
        "CZDS_AUTH_URL": url,
        "CZDS_API_URL": url,
        "CZDS_USERNAME": USERNAME,
        "CZDS_PASSWORD": PASSWORD,
        "CZDS_DOWNLOAD_DIR": str(work / "downloads"),
        "STORAGE_URI": str(data),
        "LOG_LEVEL": "INFO",
    }
    with open(work / f"crawl-{label}.log", "w") as log:
        usage = run_measured(
            [sys.executable, "-m", "scrapy", "crawl", "czds"],
            env=env,
            cwd=REPO_ROOT,
            timeout=3600,
            stdout=log,
            stderr=log,
        )
    if usage.returncode != 0:
        raise RuntimeError(f"crawl {label} failed: see {work / f'crawl-{label}.log'}")
    return usage


def parquet_bytes(data: Path, namespace: str) -> int:
    return sum(p.stat().st_size for p in (data / namespace).rglob("*.parquet"))


# -- the run -------------------------------------------------------------------------------------------


def run(arguments: argparse.Namespace) -> dict[str, Any]:
    work = arguments.work
    work.mkdir(parents=True, exist_ok=True)
    figures: dict[str, Any] = {}
    print("zone files:")
    small = zone_file(work, arguments.small)
    medium = zone_file(work, arguments.records)
    large = zone_file(work, arguments.large)
    large_next = zone_file(work, arguments.large, day=1)

    print("parse, one core (records / CPU second of the work, imports excluded):")
    for label, path in (("small", small), ("1M", medium), ("large", large)):
        usage, out = measure("parse", str(path), "bench.", work=work)
        cpu = out["inner_cpu_s"]
        figures[f"parse_{label}"] = {**out, "cpu_s": cpu, "wall_s": out["inner_wall_s"], "rss_mb": usage.maxrss_mb}
        print(
            f"  {label:>5}: {out['records']:>11,} records in {cpu:6.2f} s CPU ({usage.wall_s:.2f} s wall): "
            f"{out['records'] / cpu / 1e6:5.2f} M records/s, peak RSS {usage.maxrss_mb:.0f} MB"
        )
    usage, out = measure("dnspython", str(small), "bench.", work=work)  # the same file as ours above
    dns_rate = out["records"] / out["inner_cpu_s"]
    ours_small = figures["parse_small"]["records"] / figures["parse_small"]["cpu_s"]
    figures["dnspython_small"] = {"records": out["records"], "rate": dns_rate}
    print(f"  dnspython on the small file: {dns_rate:,.0f} records/s; ours {ours_small / dns_rate:.0f}x")
    zcat_usage, lines = zcat_lines(large, work)
    zcat_rate = lines / zcat_usage.wall_s
    ours_large = figures["parse_large"]["records"] / figures["parse_large"]["wall_s"]
    figures["zcat_large"] = {
        "lines": lines,
        "wall_s": zcat_usage.wall_s,
        "cpu_s": zcat_usage.user_s + zcat_usage.sys_s,
        "rate": zcat_rate,
    }
    print(
        f"  zcat | wc -l on the large file: {zcat_rate / 1e6:.2f} M lines/s (wall, two processes); "
        f"ours {ours_large / zcat_rate:.2f}x of it (wall)"
    )
    print("  alternatives on the 1M file (CPU s): ", end="")
    for kind, extra in (("loop", "bench."), ("duckdb", "")):
        usage, out = measure(kind, str(medium), extra, work=work)
        figures[f"alt_{kind}"] = {"cpu_s": out["inner_cpu_s"], **out}
        print(f"{kind} {out['inner_cpu_s']:.2f}", end="; ")
    for library in ("gzip", "isal", "zlib-ng"):
        usage, out = measure("decompress", str(medium), library, work=work)
        figures[f"decompress_{library}"] = {"cpu_s": out["inner_cpu_s"]}
        print(f"decompress {library} {out['inner_cpu_s']:.2f}", end="; ")
    print(f"our reader {figures['parse_1M']['cpu_s']:.2f}")

    print("end to end (scrapy crawl czds against the fake: download, raw kept, Parquet written):")
    for label, path, day, data in (
        ("1M", medium, "2026-11-01", work / "data-1M"),
        ("large day 1", large, "2026-11-01", work / "data-large"),
        ("large day 2", large_next, "2026-11-02", work / "data-large"),
    ):
        if label != "large day 2":
            shutil.rmtree(data, ignore_errors=True)
        with fake_czds(path, day) as url:
            usage = crawl(url, data, work, label.replace(" ", "-"))
        records = figures["parse_1M" if label == "1M" else "parse_large"]["records"]
        log = (work / f"crawl-{label.replace(' ', '-')}.log").read_text()
        elapsed = float(re.search(r"'elapsed_time_seconds': ([0-9.]+)", log).group(1))
        figures[f"e2e_{label}"] = {
            "wall_s": usage.wall_s,
            "crawl_s": elapsed,
            "cpu_s": usage.user_s + usage.sys_s,
            "rss_mb": usage.maxrss_mb,
            "records": records,
        }
        print(
            f"  {label:>11}: {records:>11,} records, crawl {elapsed:6.2f} s ({usage.wall_s:.2f} s with the process's "
            f"start): {records / elapsed / 1e6:5.2f} M records/s, peak RSS {usage.maxrss_mb:.0f} MB"
        )

    snapshots = sorted((work / "data-large" / "zones" / "bench").glob("*.domains.parquet"))
    new, old = str(snapshots[-1]), str(snapshots[0])
    spill = tempfile.mkdtemp(dir=work)
    usage, out = measure("diff", new, old, spill, work=work)
    shutil.rmtree(spill, ignore_errors=True)
    figures["diff_large"] = {
        "wall_s": out["inner_wall_s"],
        "cpu_s": out["inner_cpu_s"],
        "rss_mb": usage.maxrss_mb,
        **out,
    }
    print(
        f"diff of the two large dates: {out['changes']:,} changes in {out['inner_cpu_s']:.2f} s CPU "
        f"({out['inner_wall_s']:.2f} s wall; {out['inner_cpu_s'] / figures['parse_large']['cpu_s']:.2f}x the CPU of "
        f"parsing one), peak RSS {usage.maxrss_mb:.0f} MB"
    )
    domains_parquet = parquet_bytes(work / "data-1M", "domains")
    gzip_size = medium.stat().st_size
    snapshot_size = sum(p.stat().st_size for p in (work / "data-1M" / "zones" / "bench").glob("*.domains.parquet"))
    figures["sizes_1M"] = {"gzip": gzip_size, "domains_parquet": domains_parquet, "snapshot_parquet": snapshot_size}
    print(
        f"size (1M file): gzip {gzip_size / 1e6:.1f} MB; domains Parquet {domains_parquet / 1e6:.1f} MB "
        f"({domains_parquet / gzip_size:.2f}x); snapshot Parquet {snapshot_size / 1e6:.1f} MB "
        f"({snapshot_size / gzip_size:.2f}x)"
    )
    summary(figures)
    return figures


def summary(f: dict[str, Any]) -> None:
    parse_rate = f["parse_large"]["records"] / f["parse_large"]["cpu_s"]
    checks = [
        ("parse rate (large, CPU)", parse_rate, TARGET_PARSE_RATE, ">="),
        (
            "vs dnspython (small)",
            (f["parse_small"]["records"] / f["parse_small"]["cpu_s"]) / f["dnspython_small"]["rate"],
            TARGET_VS_DNSPYTHON,
            ">=",
        ),
        (
            "vs zcat | wc -l (large, CPU of both processes)",
            (f["parse_large"]["records"] / f["parse_large"]["cpu_s"])
            / (f["zcat_large"]["lines"] / f["zcat_large"]["cpu_s"]),
            TARGET_VS_ZCAT,
            ">=",
        ),
        (
            "vs zcat | wc -l (large, wall)",
            (f["parse_large"]["records"] / f["parse_large"]["wall_s"]) / f["zcat_large"]["rate"],
            TARGET_VS_ZCAT,
            ">=",
        ),
        (
            "end to end vs parse (large day 1, CPU of the crawl process, its start included)",
            f["parse_large"]["cpu_s"] / f["e2e_large day 1"]["cpu_s"],
            TARGET_E2E_VS_PARSE,
            ">=",
        ),
        (
            "end to end vs parse (large day 1, wall of the crawl)",
            f["parse_large"]["wall_s"] / f["e2e_large day 1"]["crawl_s"],
            TARGET_E2E_VS_PARSE,
            ">=",
        ),
        ("peak RSS 1M crawl (MB)", f["e2e_1M"]["rss_mb"], TARGET_RSS_MB, "<="),
        ("peak RSS large crawl, no diff (MB)", f["e2e_large day 1"]["rss_mb"], TARGET_RSS_MB, "<="),
        ("peak RSS large crawl with its diff (MB)", f["e2e_large day 2"]["rss_mb"], TARGET_RSS_MB, "<="),
        (
            "diff vs parse (large, CPU)",
            f["diff_large"]["cpu_s"] / f["parse_large"]["cpu_s"],
            TARGET_DIFF_VS_PARSE,
            "<=",
        ),
        (
            "diff vs parse (large, wall)",
            f["diff_large"]["wall_s"] / f["parse_large"]["wall_s"],
            TARGET_DIFF_VS_PARSE,
            "<=",
        ),
        (
            "domains Parquet vs gzip (1M)",
            f["sizes_1M"]["domains_parquet"] / f["sizes_1M"]["gzip"],
            TARGET_PARQUET_VS_GZIP,
            "<=",
        ),
    ]
    print("\ntargets:")
    for label, value, target, sense in checks:
        ok = value >= target if sense == ">=" else value <= target
        print(f"  {'PASS' if ok else 'FAIL'}  {label}: {value:,.2f} (target {sense} {target:,})")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.czds", description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=200_000, help="records of the file read by dnspython too")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "czds-bench")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.child:
        child(*arguments.child)
        return
    figures = run(arguments)
    if arguments.json:
        arguments.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
