"""Benchmark the PyPI crawl: the platform vs stock Scrapy vs a raw aiohttp client, on one loopback fake.

    python -m bench.pypi_crawl [--projects 100000] [--seed 1] [--only platform,stock,raw] [--json out.json]

The PyPI counterpart of ``bench.npm_crawl``, with the same shape, targets and table (its measuring, checks
and rendering are imported from there). One run starts the fake index (``tests.fakes.pypi``, realistic size
profile) in its own process, writes the N generated project names, PEP 503 normalized, to a file, then runs
each contender over the same N JSON API URLs (``GET <index>/pypi/<normalized name>/json``, answered 200
directly: a display name would cost a 301 first), one after another, each as its own subprocess:

* ``platform``: ``scrapy crawl pypi -a packages_file=…`` with the project settings, into a fresh data folder;
* ``stock``: ``scrapy runspider bench/baselines/stock_pypi_spider.py`` with Scrapy's default settings;
* ``raw``: ``python -m bench.baselines.raw_pypi_client`` (asyncio + aiohttp, fetch and ``json.loads`` only).

Each child is reaped with ``os.wait4`` (its own CPU time and peak RSS); wall time is its whole life.
``--platform-set KEY=VALUE``, ``--platform-env NAME=VALUE``, ``--platform-shards N``, ``--cprofile DIR`` and
``--repeat N`` work as in ``bench.npm_crawl``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.npm_crawl import (
    REPO_ROOT,
    Bench,
    Result,
    _count_lines,
    _parquet_rows,
    _platform_run,
    _read_line,
    _scrapy_log_stats,
    _stop,
    clean_env,
    run_bench,
    tree_bytes,
)
from bench.npm_crawl import parse_args as parse_crawl_bench_args

STOCK_PYPI_SPIDER = REPO_ROOT / "bench" / "baselines" / "stock_pypi_spider.py"
# Besides what bench.npm_crawl drops: variables the PyPI spider, the pip fallback of its index URL, or the
# platform's monitors and batching read (see crawler/settings.py).
_PYPI_STEERING_ENV = (
    "PYPI_",
    "PIP_",
    "PROGRESS_",
    "MONITOR_",
    "SPIDERMON_",
    "LOG_",
    "RETRY_",
    "PROXY_",
    "DEAD_LETTER_",
    "COMPACTION_",
    "USER_AGENT",
)
_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 normalized project name (what the JSON API answers 200 for)."""
    return _NORMALIZE.sub("-", name).lower()


def pypi_clean_env() -> dict[str, str]:
    """The caller's environment without anything that would steer a crawl (npm's list plus PyPI's)."""
    return {k: v for k, v in clean_env().items() if not k.startswith(_PYPI_STEERING_ENV)}


def write_names(path: Path, projects: int, seed: int) -> None:
    """The fake's own display names (the source of truth), normalized, one a line."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.fakes.pypi import FakePyPI

    with path.open("w", encoding="utf-8") as f:
        for name in FakePyPI(projects=projects, seed=seed).project_names():
            f.write(normalize(name) + "\n")


# ----------------------------------------------------------------------------------------- the fake


@dataclass
class PypiFake:
    proc: subprocess.Popen[bytes]
    url: str  # the index base: serves simple/ and pypi/<name>/json
    simple_url: str


@contextlib.contextmanager
def fake_index(projects: int, seed: int, workdir: Path, env: dict[str, str]) -> Iterator[PypiFake]:
    """The loopback fake PyPI in its own process; terminated on exit, whatever happens."""
    cmd = [
        sys.executable,
        "-m",
        "tests.fakes.pypi",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--projects",
        str(projects),
        "--seed",
        str(seed),
        "--size-profile",
        "realistic",
    ]
    with (workdir / "fake.stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            start_new_session=True,
        )
    try:
        assert proc.stdout is not None
        line = _read_line(proc.stdout, timeout=120.0)
        if not line:
            raise RuntimeError(f"the fake index did not start; see {workdir / 'fake.stderr.log'}")
        info = json.loads(line)
        yield PypiFake(proc, info["url"], info["simple_url"])
    finally:
        _stop(proc)


# -------------------------------------------------------------------------------------- contenders


@dataclass
class PypiBench(Bench):
    """``bench.npm_crawl.Bench`` (run, measuring, fresh dirs, cProfile) with the PyPI contenders."""

    fake: PypiFake  # type: ignore[assignment]  # Bench only reads fake.proc, which both have

    def run_platform(self) -> Result:
        cwd = self._fresh_dir("platform")
        data = cwd / "data"
        env = {
            **self.base_env,
            "SCRAPY_SETTINGS_MODULE": "crawler.settings",
            "PYTHONPATH": str(REPO_ROOT),
            "STORAGE_URI": str(data),
            "PYPI_URL": self.fake.url,
            "LOG_LEVEL": "INFO",
            "PROGRESS_INTERVAL": "0",
            **self.platform_env,
        }
        cmd = [
            *self._python("platform"),
            "-m",
            "scrapy",
            "crawl",
            "pypi",
            "-a",
            f"packages_file={self.names_file}",
            "-s",
            "LOG_LEVEL=INFO",
        ]
        for setting in self.platform_settings:
            cmd += ["-s", setting]
        details: dict[str, Any] = {
            "command": cmd,
            "overrides": list(self.platform_settings),
            "environment": dict(self.platform_env),
        }
        if self.platform_shards == 1:
            usage = self._measure("platform", cmd, env, cwd)
        else:  # -a shard=i/n, all into the same data folder (bench.npm_crawl's way); the runs are added up
            usage = self._measure_shards(cmd, env, cwd)
            details["shards"] = self.platform_shards
        run = _platform_run(data / "_meta" / "meta.db")
        details.update(run)
        records = data / "pypi"
        parquet_rows = _parquet_rows(records)
        details["parquet_rows"] = parquet_rows
        # The platform's own count (ingestion_runs.items); the Parquet rows cross-check it.
        items = int(run.get("items") or 0)
        if parquet_rows is not None and parquet_rows != items:
            print(f"!! platform: ingestion_runs.items={items} but the Parquet files hold {parquet_rows} rows")
        return Result(
            "platform",
            items,
            usage,
            ndjson_bytes=tree_bytes(records, ".ndjson"),
            parquet_bytes=tree_bytes(records, ".parquet"),
            details=details,
        )

    def run_stock(self) -> Result:
        cwd = self._fresh_dir("stock")
        # Default settings means no project: no scrapy.cfg may sit above the folder it runs in.
        if any((parent / "scrapy.cfg").exists() for parent in (cwd, *cwd.parents)):
            raise RuntimeError(f"{cwd} is inside a Scrapy project: use a --workdir outside the repository")
        out = cwd / "out.jsonl"
        cmd = [
            *self._python("stock"),
            "-m",
            "scrapy",
            "runspider",
            str(STOCK_PYPI_SPIDER),
            "-a",
            f"index_url={self.fake.url}",
            "-a",
            f"names_file={self.names_file}",
            "-o",
            f"{out}:jsonlines",
            "-s",
            "LOG_LEVEL=INFO",
        ]
        usage = self._measure("stock", cmd, {**self.base_env}, cwd)
        details: dict[str, Any] = {"command": cmd, "settings": "Scrapy defaults + LOG_LEVEL=INFO + FEEDS (-o)"}
        details.update(_scrapy_log_stats(cwd / "stderr.log"))
        size = out.stat().st_size if out.exists() else 0
        return Result("stock", _count_lines(out), usage, ndjson_bytes=size, details=details)

    def run_raw(self) -> Result:
        cwd = self._fresh_dir("raw")
        env = {**self.base_env, "PYTHONPATH": str(REPO_ROOT)}
        cmd = [
            *self._python("raw"),
            "-m",
            "bench.baselines.raw_pypi_client",
            "--index-url",
            self.fake.url,
            "--names-file",
            str(self.names_file),
            "--concurrency",
            str(self.raw_concurrency),
        ]
        usage = self._measure("raw", cmd, env, cwd)
        report: dict[str, Any] = {}
        with contextlib.suppress(ValueError, IndexError):
            report = json.loads((cwd / "stdout.log").read_text().strip().splitlines()[-1])
        return Result("raw", int(report.get("items", 0)), usage, details={"command": cmd, **report})


# ----------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return parse_crawl_bench_args(
        argv, prog="python -m bench.pypi_crawl", description=__doc__.split("\n")[0], unit="projects"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(
        args,
        count=args.projects,
        count_key="projects",
        workdir_prefix="bench-pypi-",
        base_env=pypi_clean_env(),
        write_names_to=lambda path: write_names(path, args.projects, args.seed),
        open_fake=lambda workdir, env: fake_index(args.projects, args.seed, workdir, env),
        describe_fake=lambda fake: f"fake PyPI at {fake.url} (pid {fake.proc.pid}), {args.projects} projects",
        bench_class=PypiBench,
    )


if __name__ == "__main__":
    sys.exit(main())
