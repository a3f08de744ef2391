"""Soak a distributed full npm sync at full page size, killing the worker that reads the feed mid-run.

    python -m bench.distributed_soak [--packages 20000] [--kill-after 8] [--pg-url postgresql://…]

The loopback fake npm registry (realistic sizes, 10 ms latency) serves ``--packages`` packages. A worker with
``-a mode=full`` (it claims the feed) and one with ``-a mode=worker`` start together on the machine's Redis and
PostgreSQL (a schema of its own, dropped afterwards); after ``--kill-after`` seconds the feed reader is
SIGKILLed and a third worker joins. It then checks what the tests check at a small scale, with the feed's
default page size (1,000): every package stored exactly once in the latest-per-key view, the incremental cursor
at the feed's end, the full cursor cleared, the dead worker's leases re-queued, nothing of the run left in
Redis. Prints the figures; exits 1 if a check fails. Every child has a timeout.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
import redis

from bench.npm_crawl import REPO_ROOT, clean_env
from crawler.meta import MetaDB
from tests.fakes.npm import FakeNpmRegistry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed_soak", description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=20_000)
    parser.add_argument("--kill-after", type=float, default=8.0, help="seconds before the feed reader is killed")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--pg-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    schema, prefix = f"soak_{uuid.uuid4().hex[:8]}", f"soak-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    meta_url = f"{args.pg_url}?options=-csearch_path%3D{schema}"
    failures: list[str] = []
    try:
        with FakeNpmRegistry(packages=args.packages, seed=9, latency=0.01, size_profile="realistic").serve() as fake:
            env = {
                **clean_env(),
                "PYTHONPATH": str(REPO_ROOT),
                "SCRAPY_SETTINGS_MODULE": "crawler.settings",
                "STORAGE_URI": str(workdir / "data"),
                "META_DB_URL": meta_url,
                "REDIS_URL": args.redis_url,
                "DISTRIBUTED_KEY_PREFIX": prefix,
                "DISTRIBUTED_HEARTBEAT_SECONDS": "1",
                "DISTRIBUTED_WORKER_TIMEOUT": "5",
                "NPM_REGISTRY_URL": fake.registry_url,
                "NPM_CHANGES_URL": fake.changes_url,
            }

            def start(name: str, mode: str) -> subprocess.Popen[bytes]:
                log = (workdir / f"{name}.log").open("w")
                command = [sys.executable, "-m", "scrapy", "crawl", "npm", "-a", f"mode={mode}"]
                return subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)

            started = time.monotonic()
            reader, worker = start("reader", "full"), start("worker-1", "worker")
            time.sleep(args.kill_after)
            server = redis.Redis.from_url(args.redis_url)
            held = sum(server.hlen(key) for key in server.scan_iter(f"{prefix}:npm:leases:*-{reader.pid}-*"))
            print(f"killing the feed reader after {fake.total_requests} requests, holding {held} leases", flush=True)
            reader.send_signal(signal.SIGKILL)
            reader.wait()
            helper = start("worker-2", "worker")
            codes = [worker.wait(timeout=args.timeout), helper.wait(timeout=args.timeout)]
            wall = time.monotonic() - started
            last_seq = str(max(fake.feed_positions().values()))
            print(f"workers exited {codes} after {wall:.1f} s; {fake.total_requests} requests to the fake")
            if codes != [0, 0]:
                failures.append(f"workers exited {codes}")
        query = "SELECT count(*) AS n, count(DISTINCT name) AS names FROM npm_package"
        result = subprocess.run(
            [sys.executable, "-m", "scrapy", "query", "--format", "json", query],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        counts = json.loads(result.stdout)[0]
        print(f"stored: {counts['n']} rows, {counts['names']} packages")
        if counts["n"] != counts["names"] or counts["names"] < args.packages:
            failures.append(f"stored {counts} for {args.packages} packages")
        with MetaDB.connect(meta_url) as meta:
            cursor, full = meta.get_cursor("npm"), meta.get_cursor("npm", "full")
            requeued = sum((run["stats"] or {}).get("distributed/requeued", 0) for run in meta.last_runs("npm"))
        print(f"cursor {cursor} (feed end {last_seq}), full cursor {full!r}, leases re-queued {requeued}")
        if cursor != last_seq or full:
            failures.append(f"cursor {cursor!r} / full {full!r}")
        if held and not requeued:
            failures.append("the dead worker's leases were not re-queued")
        left = sorted(key.decode() for key in server.scan_iter(f"{prefix}:*"))
        if left:
            failures.append(f"left in Redis: {left}")
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print("FAILED: " + "; ".join(failures) if failures else f"all checks passed (logs: {workdir})")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
