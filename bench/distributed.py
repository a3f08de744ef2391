"""Benchmark distributed crawling on Redis: workers kept fed vs scrapy-redis's idle pull, and 2 workers vs 1.

    python -m bench.distributed [--packages 3000] [--latency 0.1] [--latency-tail 0.05] [--json out.json]

One loopback fake npm registry (``tests.fakes.npm``, its own process) answers every contender with the same
latency: ``--latency`` seconds, ten times that for every 1/``--latency-tail``-th request (a network's long
tail). Every contender fetches the same N packuments with 32 concurrent requests per worker, on the
machine's Redis (``--redis-url``), each under a key prefix of its own (deleted afterwards):

* ``stock-redis``: scrapy-redis's ``RedisSpider`` (``bench/baselines/redis_spider.py``), the URLs pushed to its
  start-URL list; it pulls a batch of ``CONCURRENT_REQUESTS`` each time it goes idle. Its time runs to its
  last item (its idle close-down is not counted).
* ``platform-1``: ``scrapy crawl npm -a packages_file=…`` with ``REDIS_URL``: names go to the shared
  request queue, workers take from it whenever they have a free slot.
* ``platform-2``: the same plus a second worker, ``scrapy crawl npm -a mode=worker``, started together.

Each process is reaped with ``os.wait4`` (its own CPU and peak RSS). Printed: items, wall s, items/s, CPU s per
1,000 items, and the ratios ``platform-1 / stock-redis`` (keeping workers fed) and ``platform-2 /
platform-1`` (adding a worker). Every child has a timeout; the fake is stopped on the way out.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from bench.npm_crawl import REPO_ROOT, clean_env, fake_registry, run_measured_group, write_names

REDIS_SPIDER = REPO_ROOT / "bench" / "baselines" / "redis_spider.py"
CONCURRENCY = 32


@dataclass
class Outcome:
    contender: str
    workers: int
    items: int
    wall_s: float
    cpu_s: float
    maxrss_mb: float

    @property
    def rate(self) -> float:
        return self.items / self.wall_s if self.wall_s else 0.0


def platform(
    name: str, workers: int, args: argparse.Namespace, fake_env: dict[str, str], names: Path, workdir: Path
) -> Outcome:
    folder = workdir / name
    folder.mkdir()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **clean_env(),
        **fake_env,
        "PYTHONPATH": str(REPO_ROOT),
        "SCRAPY_SETTINGS_MODULE": "crawler.settings",
        "STORAGE_URI": str(folder / "data"),
        "META_DB_URL": f"sqlite:///{folder / 'meta.db'}",  # one host: a shared SQLite file is enough
        "REDIS_URL": args.redis_url,
        "DISTRIBUTED_KEY_PREFIX": prefix,
        "LOG_LEVEL": "INFO",
    }
    base = [sys.executable, "-m", "scrapy", "crawl", "npm", "-s", f"CONCURRENT_REQUESTS={CONCURRENCY}"]
    commands = [[*base, "-a", f"packages_file={names}"]]
    commands += [[*base, "-a", "mode=worker"] for _ in range(workers - 1)]
    logs = [(folder / f"worker-{i}.log").open("w") for i in range(workers)]
    try:
        usage = run_measured_group(
            [(command, folder, log, log) for command, log in zip(commands, logs, strict=True)],
            env=env,
            timeout=args.timeout,
        )
    finally:
        for log in logs:
            log.close()
        _delete_prefix(args.redis_url, prefix)
    if usage.returncode != 0 or usage.timed_out:
        raise SystemExit(f"{name} failed (exit {usage.returncode}, timed out: {usage.timed_out}); see {folder}")
    with sqlite3.connect(folder / "meta.db") as db:
        items = db.execute("SELECT COALESCE(SUM(items), 0) FROM ingestion_runs").fetchone()[0]
    return Outcome(name, workers, items, usage.wall_s, usage.user_s + usage.sys_s, usage.maxrss_mb)


def stock_redis(args: argparse.Namespace, registry_url: str, names: Path, workdir: Path) -> Outcome:
    folder = workdir / "stock-redis"
    folder.mkdir()
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    server = redis.Redis.from_url(args.redis_url)
    start_urls = f"{prefix}:start_urls"
    urls = [registry_url + quote(line.strip(), safe="@") for line in names.read_text().splitlines() if line.strip()]
    for chunk in range(0, len(urls), 1000):
        server.rpush(start_urls, *urls[chunk : chunk + 1000])
    timing = folder / "timing.json"
    command = [
        sys.executable,
        "-m",
        "scrapy",
        "runspider",
        str(REDIS_SPIDER),
        "-a",
        f"redis_key={start_urls}",
        "-a",
        f"timing_file={timing}",
        "-o",
        "out.jsonl:jsonlines",
        "-s",
        f"REDIS_URL={args.redis_url}",
        "-s",
        "SCHEDULER=scrapy_redis.scheduler.Scheduler",
        "-s",
        "DUPEFILTER_CLASS=scrapy_redis.dupefilter.RFPDupeFilter",
        "-s",
        f"SCHEDULER_QUEUE_KEY={prefix}:%(spider)s:requests",
        "-s",
        f"SCHEDULER_DUPEFILTER_KEY={prefix}:%(spider)s:dupefilter",
        "-s",
        f"CONCURRENT_REQUESTS={CONCURRENCY}",
        "-s",
        f"CONCURRENT_REQUESTS_PER_DOMAIN={CONCURRENCY}",  # as the npm policy: the same concurrency everywhere
        "-s",
        "MAX_IDLE_TIME_BEFORE_CLOSE=1",
        "-s",
        "LOG_LEVEL=INFO",
    ]
    env = {**clean_env(), "PYTHONPATH": str(REPO_ROOT)}
    started = time.time()
    with (folder / "worker.log").open("w") as log:
        try:
            usage = run_measured_group([(command, folder, log, log)], env=env, timeout=args.timeout)
        finally:
            _delete_prefix(args.redis_url, prefix)
    if usage.returncode != 0 or usage.timed_out or not timing.exists():
        raise SystemExit(f"stock-redis failed (exit {usage.returncode}); see {folder}")
    last = json.loads(timing.read_text())["last"]
    items = sum(1 for _ in (folder / "out.jsonl").open())
    return Outcome("stock-redis", 1, items, last - started, usage.user_s + usage.sys_s, usage.maxrss_mb)


def _delete_prefix(url: str, prefix: str) -> None:
    server = redis.Redis.from_url(url)
    keys = list(server.scan_iter(f"{prefix}:*"))
    if keys:
        server.delete(*keys)


def render(outcomes: dict[str, Outcome]) -> str:
    lines = [
        f"{'contender':<12} {'workers':>7} {'items':>7} {'wall s':>8} {'items/s':>9} {'CPU s/1k':>9} {'RSS MB':>8}",
    ]
    for o in outcomes.values():
        cpu = 1000 * o.cpu_s / o.items if o.items else float("nan")
        lines.append(
            f"{o.contender:<12} {o.workers:>7} {o.items:>7} {o.wall_s:>8.1f} {o.rate:>9.1f} {cpu:>9.2f} "
            f"{o.maxrss_mb:>8.0f}"
        )
    if "platform-1" in outcomes and "stock-redis" in outcomes:
        ratio = outcomes["platform-1"].rate / outcomes["stock-redis"].rate
        lines.append(f"kept fed vs idle pull (platform-1 / stock-redis items/s): {ratio:.2f}x")
    if "platform-2" in outcomes and "platform-1" in outcomes:
        ratio = outcomes["platform-2"].rate / outcomes["platform-1"].rate
        lines.append(f"2 workers vs 1 (platform-2 / platform-1 items/s): {ratio:.2f}x")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--packages", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per response")
    parser.add_argument("--latency-tail", type=float, default=0.05, help="fraction of responses 10x slower")
    parser.add_argument("--only", default="stock-redis,platform-1,platform-2")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--workdir", type=Path, help="keep logs and output here (default: a temp dir)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-distributed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    names = workdir / "names.txt"
    write_names(names, args.packages)
    extra = ["--latency", str(args.latency), "--latency-tail", str(args.latency_tail)]
    outcomes: dict[str, Outcome] = {}
    with fake_registry(args.packages, args.seed, workdir, clean_env(), extra) as fake:
        fake_env = {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        for contender in [c.strip() for c in args.only.split(",") if c.strip()]:
            if contender == "stock-redis":
                outcome = stock_redis(args, fake.registry_url, names, workdir)
            elif contender in ("platform-1", "platform-2"):
                outcome = platform(contender, int(contender[-1]), args, fake_env, names, workdir)
            else:
                raise SystemExit(f"unknown contender {contender!r}")
            outcomes[contender] = outcome
            print(f"{contender}: {outcome.items} items in {outcome.wall_s:.1f} s", flush=True)
    print(
        f"\n{args.packages} packuments, latency {args.latency} s (+{args.latency_tail:.0%} at 10x), workdir {workdir}"
    )
    print(render(outcomes))
    if args.json:
        args.json.write_text(json.dumps({k: {**asdict(v), "rate": v.rate} for k, v in outcomes.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
