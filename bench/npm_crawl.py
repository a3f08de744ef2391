"""Benchmark the npm crawl: the platform vs stock Scrapy vs a raw aiohttp client, on one loopback fake.

    python -m bench.npm_crawl [--packages 100000] [--seed 1] [--only platform,stock,raw] [--json out.json]

One run starts the fake npm registry (``tests.fakes.npm``, realistic size profile) in its own process, writes
the N generated package names to a file, then runs each contender over the same N packument URLs
(``GET <registry>/<name>``, ``Accept: application/json``), one after another, each as its own subprocess:

* ``platform``: ``scrapy crawl npm -a packages_file=…`` with the project settings, into a fresh data folder;
* ``stock``: ``scrapy runspider bench/baselines/stock_spider.py`` with Scrapy's default settings;
* ``raw``: ``python -m bench.baselines.raw_client`` (asyncio + aiohttp, fetch and ``json.loads`` only).

Each child is reaped with ``os.wait4`` on its pid, which gives that child's own user/sys CPU time and peak RSS
(its descendants' too, once waited for), so the figures of one contender never mix with another's. Wall time
is the child's whole life, interpreter start-up included, as an operator would see it.

It then prints a table and the ratios checked against the platform's targets, and stops by itself: every
child has a timeout and the fake is terminated on the way out, also on errors and Ctrl-C.

Experiments, none of which changes anything in ``crawler/``: ``--platform-set KEY=VALUE`` (repeatable) passes
``-s KEY=VALUE`` to the platform crawl only,
``--platform-env NAME=VALUE`` adds to its environment, ``--platform-shards N`` runs it as N concurrent processes
(``-a shard=i/N``; their CPU and peak RSS are added up), ``--cprofile DIR`` runs every contender under cProfile
into ``DIR/<contender>.prof`` (slower: read its proportions, not its timings), and ``--repeat N`` keeps each
contender's best of N interleaved runs (other load on a shared machine only ever slows a run down).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform as platform_module
import re
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parent.parent
STOCK_SPIDER = REPO_ROOT / "bench" / "baselines" / "stock_spider.py"
CONTENDERS = ("platform", "stock", "raw")
# Prefixes of variables that steer a crawl: none may leak from the caller's shell into a contender.
_STEERING_ENV = ("NPM_", "npm_config", "STORAGE_", "META_", "AWS_", "SCRAPY_", "BATCH_", "PARQUET_", "RUN_ID")

# Targets of the platform (the numbers the table is checked against).
TARGET_VS_STOCK = 3.0  # platform items/s >= 3x stock Scrapy's
TARGET_VS_RAW = 0.33  # platform items/s >= 1/3 of the raw client's
TARGET_RSS_MB = 400.0  # platform peak RSS
TARGET_PARQUET_RATIO = 1 / 6  # Parquet bytes <= 1/6 of the NDJSON bytes of the same records


# ------------------------------------------------------------------------------------------ measuring


@dataclass
class Usage:
    """What the kernel says about one finished child (``os.wait4``)."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_mb: float
    timed_out: bool


def _kill_group(proc: subprocess.Popen[Any], sig: int = signal.SIGKILL) -> None:
    # Children run in their own session, so the whole tree goes (scrapy may spawn helpers).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def run_measured(
    cmd: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float, stdout: TextIO, stderr: TextIO
) -> Usage:
    """Run ``cmd`` to completion (or until ``timeout``) and return its own CPU, peak RSS and wall time."""
    return run_measured_group([(cmd, cwd, stdout, stderr)], env=env, timeout=timeout)


def run_measured_group(
    procs: Sequence[tuple[Sequence[str], Path, TextIO, TextIO]], *, env: dict[str, str], timeout: float
) -> Usage:
    """Run commands side by side and add up their usage: CPU and peak RSS are summed (the RSS sum is an
    upper bound of the group's footprint), wall time runs from the first start to the last exit."""
    started = time.perf_counter()
    children: list[subprocess.Popen[Any]] = []
    timed_out = threading.Event()

    def _on_timeout() -> None:
        timed_out.set()
        for child in children:
            _kill_group(child)

    # A timer rather than polling: the main thread blocks in wait4, so the wall time is exact.
    watchdog = threading.Timer(timeout, _on_timeout)
    watchdog.daemon = True
    user = system = maxrss = 0.0
    returncode = 0
    try:
        for cmd, cwd, stdout, stderr in procs:
            children.append(
                subprocess.Popen(
                    list(cmd),
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    start_new_session=True,
                )
            )
        watchdog.start()
        for child in children:
            _, status, rusage = os.wait4(child.pid, 0)
            # wait4 reaped it behind Popen's back: tell Popen, or it would try to reap a pid that may be reused.
            child.returncode = os.waitstatus_to_exitcode(status)
            returncode = returncode or child.returncode
            user += rusage.ru_utime
            system += rusage.ru_stime
            maxrss += rusage.ru_maxrss / 1024  # Linux reports KiB
    except BaseException:  # Ctrl-C or anything else: never leave a child behind
        for child in children:
            if child.returncode is None:
                _kill_group(child)
                child.wait()
        raise
    finally:
        watchdog.cancel()
    return Usage(
        returncode=returncode,
        wall_s=time.perf_counter() - started,
        user_s=user,
        sys_s=system,
        maxrss_mb=maxrss,
        timed_out=timed_out.is_set(),
    )


def proc_cpu_seconds(pid: int) -> float | None:
    """User+sys CPU seconds used so far by a live process (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_bytes(root: Path, suffix: str) -> int:
    return sum(p.stat().st_size for p in root.rglob(f"*{suffix}") if p.is_file() and not p.name.startswith("."))


# ----------------------------------------------------------------------------------------- the fake


@dataclass
class Fake:
    proc: subprocess.Popen[bytes]
    registry_url: str
    changes_url: str


@contextlib.contextmanager
def fake_registry(
    packages: int, seed: int, workdir: Path, env: dict[str, str], extra: Sequence[str] = ()
) -> Iterator[Fake]:
    """The loopback fake npm registry in its own process (``extra``: more of its options); terminated on
    exit, whatever happens."""
    cmd = [
        sys.executable,
        "-m",
        "tests.fakes.npm",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--packages",
        str(packages),
        "--seed",
        str(seed),
        "--size-profile",
        "realistic",
        *extra,
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
        line = _read_line(proc.stdout, timeout=60.0)
        if not line:
            raise RuntimeError(f"the fake registry did not start; see {workdir / 'fake.stderr.log'}")
        info = json.loads(line)
        yield Fake(proc, info["registry_url"], info["changes_url"])
    finally:
        _stop(proc)


def _read_line(stream: Any, timeout: float) -> bytes:
    # The fake announces itself with one line once it listens; select() so a hung start cannot hang us.
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return b""
    return stream.readline()


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


# -------------------------------------------------------------------------------------- contenders


@dataclass
class Result:
    contender: str
    items: int
    usage: Usage
    ndjson_bytes: int | None = None
    parquet_bytes: int | None = None
    #: CPU seconds the fake spent serving this contender (it shares the 2 cores with it)
    fake_cpu_s: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def items_per_s(self) -> float:
        return self.items / self.usage.wall_s if self.usage.wall_s > 0 else 0.0

    def complete(self, packages: int) -> bool:
        return self.items == packages and self.usage.returncode == 0 and not self.usage.timed_out

    @property
    def cpu_utilization(self) -> float:
        """CPU seconds per wall second: ~1.0 means CPU-bound on one core, well below means waiting."""
        return (self.usage.user_s + self.usage.sys_s) / self.usage.wall_s if self.usage.wall_s > 0 else 0.0

    @property
    def cpu_per_1000(self) -> float | None:
        if not self.items:
            return None
        return (self.usage.user_s + self.usage.sys_s) * 1000 / self.items

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["items_per_s"] = round(self.items_per_s, 2)
        out["cpu_s_per_1000_items"] = self.cpu_per_1000
        out["cpu_utilization"] = round(self.cpu_utilization, 3)
        return out


@dataclass
class Bench:
    packages: int
    names_file: Path
    workdir: Path
    fake: Fake
    base_env: dict[str, str]
    timeout: float
    raw_concurrency: int
    platform_settings: list[str]
    platform_shards: int
    platform_env: dict[str, str]
    cprofile_dir: Path | None

    def run(self, contender: str) -> Result:
        runner = {"platform": self.run_platform, "stock": self.run_stock, "raw": self.run_raw}[contender]
        before = proc_cpu_seconds(self.fake.proc.pid)
        load_before = _loadavg()
        result = runner()
        after = proc_cpu_seconds(self.fake.proc.pid)
        if before is not None and after is not None:
            result.fake_cpu_s = round(after - before, 3)
        # Other work on the machine inflates wall time (not CPU time): keep the evidence with the figures.
        result.details["loadavg_1m"] = {"before": load_before, "after": _loadavg()}
        if self.fake.proc.poll() is not None:
            raise RuntimeError(f"the fake registry died during the {contender} run (exit {self.fake.proc.returncode})")
        return result

    def _measure(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path) -> Usage:
        with (cwd / "stdout.log").open("w") as out, (cwd / "stderr.log").open("w") as err:
            usage = run_measured(cmd, env=env, cwd=cwd, timeout=self.timeout, stdout=out, stderr=err)
        if usage.timed_out:
            print(f"!! {name}: killed after the {self.timeout:.0f} s timeout; logs in {cwd}", file=sys.stderr)
        elif usage.returncode != 0:
            print(f"!! {name}: exited {usage.returncode}; logs in {cwd}", file=sys.stderr)
        return usage

    def run_platform(self) -> Result:
        cwd = self._fresh_dir("platform")
        data = cwd / "data"
        env = {
            **self.base_env,
            "SCRAPY_SETTINGS_MODULE": "crawler.settings",
            "PYTHONPATH": str(REPO_ROOT),
            "STORAGE_URI": str(data),
            "NPM_REGISTRY_URL": self.fake.registry_url,
            "NPM_CHANGES_URL": self.fake.changes_url,
            "LOG_LEVEL": "INFO",
            **self.platform_env,
        }
        cmd = [
            *self._python("platform"),
            "-m",
            "scrapy",
            "crawl",
            "npm",
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
        else:
            usage = self._measure_shards(cmd, env, cwd)
            details["shards"] = self.platform_shards
        run = _platform_run(data / "_meta" / "meta.db")
        details.update(run)
        parquet_rows = _parquet_rows(data)
        details["parquet_rows"] = parquet_rows
        # The platform's own count (store/records in ingestion_runs); the Parquet rows cross-check it.
        items = int(run.get("items") or 0)
        if parquet_rows is not None and parquet_rows != items:
            print(f"!! platform: ingestion_runs.items={items} but the Parquet files hold {parquet_rows} rows")
        return Result(
            "platform",
            items,
            usage,
            ndjson_bytes=tree_bytes(data, ".ndjson"),
            parquet_bytes=tree_bytes(data, ".parquet"),
            details=details,
        )

    def _measure_shards(self, cmd: list[str], env: dict[str, str], cwd: Path) -> Usage:
        # One process per shard, all at once, into the same data folder and metadata DB (as separate runs):
        # how a deployment would use more than one core. Needs a spider that takes `-a shard=i/n`.
        n = self.platform_shards
        with contextlib.ExitStack() as stack:
            procs = []
            for i in range(n):
                shard_dir = cwd / f"shard-{i}"
                shard_dir.mkdir()
                out = stack.enter_context((shard_dir / "stdout.log").open("w"))
                err = stack.enter_context((shard_dir / "stderr.log").open("w"))
                procs.append(([*cmd, "-a", f"shard={i}/{n}"], shard_dir, out, err))
            usage = run_measured_group(procs, env=env, timeout=self.timeout)
        if usage.timed_out or usage.returncode != 0:
            print(f"!! platform shards: exit {usage.returncode}, timed out: {usage.timed_out}; logs in {cwd}")
        return usage

    def run_stock(self) -> Result:
        cwd = self._fresh_dir("stock")
        # Default settings means no project: no scrapy.cfg may sit above the folder it runs in.
        if any((parent / "scrapy.cfg").exists() for parent in (cwd, *cwd.parents)):
            raise RuntimeError(f"{cwd} is inside a Scrapy project: use a --workdir outside the repository")
        out = cwd / "out.jsonl"
        env = {**self.base_env}
        cmd = [
            *self._python("stock"),
            "-m",
            "scrapy",
            "runspider",
            str(STOCK_SPIDER),
            "-a",
            f"registry_url={self.fake.registry_url}",
            "-a",
            f"names_file={self.names_file}",
            "-o",
            f"{out}:jsonlines",
            "-s",
            "LOG_LEVEL=INFO",
        ]
        usage = self._measure("stock", cmd, env, cwd)
        items = _count_lines(out)
        details: dict[str, Any] = {"command": cmd, "settings": "Scrapy defaults + LOG_LEVEL=INFO + FEEDS (-o)"}
        details.update(_scrapy_log_stats(cwd / "stderr.log"))
        return Result("stock", items, usage, ndjson_bytes=out.stat().st_size if out.exists() else 0, details=details)

    def run_raw(self) -> Result:
        cwd = self._fresh_dir("raw")
        env = {**self.base_env, "PYTHONPATH": str(REPO_ROOT)}
        cmd = [
            *self._python("raw"),
            "-m",
            "bench.baselines.raw_client",
            "--registry-url",
            self.fake.registry_url,
            "--names-file",
            str(self.names_file),
            "--concurrency",
            str(self.raw_concurrency),
        ]
        usage = self._measure("raw", cmd, env, cwd)
        report: dict[str, Any] = {}
        with contextlib.suppress(ValueError, IndexError):
            report = json.loads((cwd / "stdout.log").read_text().strip().splitlines()[-1])
        details = {"command": cmd, **report}
        return Result("raw", int(report.get("items", 0)), usage, details=details)

    def _python(self, contender: str) -> list[str]:
        if self.cprofile_dir is None:
            return [sys.executable]
        return [sys.executable, "-m", "cProfile", "-o", str(self.cprofile_dir / f"{contender}.prof")]

    def _fresh_dir(self, name: str) -> Path:
        path = self.workdir / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _platform_run(db: Path) -> dict[str, Any]:
    """The crawl's row of ``ingestion_runs``, with the stats that matter here pulled out of its JSON."""
    if not db.exists():
        return {}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT run_id, finish_reason, items, errors, dead_letters, bytes_written, stats"
            " FROM ingestion_runs ORDER BY started_at"
        ).fetchall()
    if not rows:
        return {}
    if len(rows) > 1:  # sharded: one run per shard, added up
        parts = [_platform_run_row(row) for row in rows]
        total = {k: sum(int(p[k] or 0) for p in parts) for k in ("items", "errors", "dead_letters", "bytes_written")}
        return {**total, "finish_reason": ",".join(sorted({str(p["finish_reason"]) for p in parts})), "runs": parts}
    return _platform_run_row(rows[0])


def _platform_run_row(row: tuple[Any, ...]) -> dict[str, Any]:
    run_id, reason, items, errors, dead_letters, bytes_written, stats_json = row
    stats = json.loads(stats_json or "{}")
    keep = (
        "elapsed_time_seconds",
        "memusage/max",
        "downloader/response_count",
        "downloader/response_bytes",
        "store/batches",
        "retry/count",
        "log_count/WARNING",
        "log_count/ERROR",
    )
    return {
        "run_id": run_id,
        "finish_reason": reason,
        "items": items,
        "errors": errors,
        "dead_letters": dead_letters,
        "bytes_written": bytes_written,
        "stats": {k: stats[k] for k in keep if k in stats},
    }


def _parquet_rows(data: Path) -> int | None:
    try:
        import pyarrow.parquet as pq  # only the platform writes Parquet; import it only then
    except ImportError:
        return None
    return sum(pq.read_metadata(p).num_rows for p in data.rglob("*.parquet") if not p.name.startswith("."))


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as f:
        return sum(1 for line in f if line.strip())


_STAT = re.compile(r"^ ?[{ ]'(?P<key>[\w/]+)': (?P<value>[0-9.]+)[,}]", re.MULTILINE)


def _scrapy_log_stats(log: Path) -> dict[str, Any]:
    """A few numbers from the stats dump at the end of a Scrapy log (it holds datetimes: no literal_eval)."""
    if not log.exists():
        return {}
    text = log.read_text(errors="replace")
    start = text.rfind("Dumping Scrapy stats")
    if start < 0:
        return {}
    wanted = ("elapsed_time_seconds", "memusage/max", "item_scraped_count", "log_count/ERROR", "log_count/WARNING")
    found = {m["key"]: float(m["value"]) for m in _STAT.finditer(text, start)}
    found.update({k: int(v) for k, v in found.items() if v.is_integer()})
    return {"stats": {k: found[k] for k in wanted if k in found}}


# ----------------------------------------------------------------------------------------- reporting


@dataclass
class Check:
    label: str
    value: float | None
    target: str
    passed: bool | None  # None: informational, or a contender was not run
    #: the contenders whose figures it uses
    needs: tuple[str, ...] = ("platform",)
    #: one of them did not finish its work (timeout, crash, missing items): no verdict
    invalid: bool = False

    @property
    def verdict(self) -> str:
        if self.value is None:
            return "SKIP"
        if self.invalid:
            return "INVALID"
        return "INFO" if self.passed is None else ("PASS" if self.passed else "FAIL")


def checks(results: dict[str, Result], packages: int) -> list[Check]:
    plat, stock, raw = (results.get(name) for name in CONTENDERS)
    out: list[Check] = []

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    vs_stock = ratio(plat.items_per_s, stock.items_per_s) if plat and stock else None
    vs_raw = ratio(plat.items_per_s, raw.items_per_s) if plat and raw else None
    out.append(
        Check(
            "platform items/s / stock items/s",
            vs_stock,
            f">= {TARGET_VS_STOCK:g}",
            _ge(vs_stock, TARGET_VS_STOCK),
            needs=("platform", "stock"),
        )
    )
    out.append(
        Check(
            "platform items/s / raw items/s",
            vs_raw,
            f">= {TARGET_VS_RAW:g}",
            _ge(vs_raw, TARGET_VS_RAW),
            needs=("platform", "raw"),
        )
    )
    rss = plat.usage.maxrss_mb if plat else None
    out.append(
        Check("platform peak RSS (MB)", rss, f"<= {TARGET_RSS_MB:g}", None if rss is None else rss <= TARGET_RSS_MB)
    )
    pq_ratio = ratio(plat.parquet_bytes, plat.ndjson_bytes) if plat else None
    out.append(
        Check(
            "Parquet bytes / NDJSON bytes",
            pq_ratio,
            f"<= 1/{1 / TARGET_PARQUET_RATIO:g}",
            None if pq_ratio is None else pq_ratio <= TARGET_PARQUET_RATIO,
        )
    )
    for other in (stock, raw):
        if plat is None or other is None:
            continue
        value = ratio(plat.cpu_per_1000, other.cpu_per_1000)
        label = f"platform CPU/1000 items / {other.contender}'s"
        out.append(Check(label, value, "(no target)", None, needs=("platform", other.contender)))
    # A ratio over a run that was cut short compares different work: flag it rather than judge it.
    incomplete = {name for name, r in results.items() if not r.complete(packages)}
    for check in out:
        check.invalid = bool(incomplete.intersection(check.needs))
    return out


def _ge(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(results: dict[str, Result], packages: int) -> str:
    header = (
        f"{'contender':<10} {'items':>8} {'wall s':>8} {'items/s':>9} {'CPU s/1k':>9} {'peak RSS MB':>11} "
        f"{'NDJSON bytes':>14} {'Parquet bytes':>14} {'CPU %':>6} {'fake CPU s':>10}"
    )
    lines = [header, "-" * len(header)]
    for result in results.values():
        u = result.usage
        flag = "" if result.complete(packages) else "  (!)"
        lines.append(
            f"{result.contender:<10} {result.items:>8} {u.wall_s:>8.1f} {result.items_per_s:>9.1f} "
            f"{_fmt(result.cpu_per_1000, '.3f'):>9} {u.maxrss_mb:>11.0f} {_fmt(result.ndjson_bytes, ','):>14} "
            f"{_fmt(result.parquet_bytes, ','):>14} {100 * result.cpu_utilization:>6.0f} "
            f"{_fmt(result.fake_cpu_s, '.1f'):>10}{flag}"
        )
    if not all(r.complete(packages) for r in results.values()):
        lines.append(f"(!) incomplete: fewer than {packages} items, or a non-zero exit / timeout")
    lines.append("")
    for check in checks(results, packages):
        lines.append(f"{check.label:<40} {_fmt(check.value, '.3f'):>9}  target {check.target:<10} {check.verdict}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main


def _report_run(result: Result) -> None:
    u = result.usage
    print(
        f"  {result.items} items in {u.wall_s:.1f} s ({result.items_per_s:.0f}/s), CPU {u.user_s + u.sys_s:.1f} s"
        f" ({100 * result.cpu_utilization:.0f} %), peak RSS {u.maxrss_mb:.0f} MB,"
        f" load {result.details['loadavg_1m']['before']} -> {result.details['loadavg_1m']['after']}",
        flush=True,
    )


def write_names(path: Path, packages: int) -> None:
    # The fake's own naming is the source of truth; the repo root may not be on sys.path when this file is
    # run as a script from elsewhere.
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.fakes.npm import package_name

    with path.open("w", encoding="utf-8") as f:
        for i in range(packages):
            f.write(package_name(i) + "\n")


def clean_env() -> dict[str, str]:
    """The caller's environment without anything that would steer a crawl."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_STEERING_ENV) and k != "PYTHONPATH"}


def parse_args(
    argv: Sequence[str] | None,
    *,
    prog: str = "python -m bench.npm_crawl",
    description: str = __doc__.split("\n")[0],
    unit: str = "packages",
) -> argparse.Namespace:
    """The crawl benchmarks' options (``bench.pypi_crawl`` counts ``projects`` instead of ``packages``)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(f"--{unit}", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated, run in this order")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--raw-concurrency", type=int, default=64)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per contender, interleaved; the table shows each one's best run"
    )
    parser.add_argument("--timeout", type=float, help=f"seconds per contender (default: 300 + 20 ms per {unit[:-1]})")
    parser.add_argument(
        "--platform-set", action="append", default=[], metavar="KEY=VALUE", help="-s override for the platform crawl"
    )
    parser.add_argument(
        "--platform-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for the platform crawl (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument(
        "--platform-shards",
        type=int,
        default=1,
        metavar="N",
        help="run the platform as N concurrent processes with -a shard=i/N (a spider must support it)",
    )
    parser.add_argument("--cprofile", type=Path, metavar="DIR", help="profile each contender into DIR/<name>.prof")
    parser.add_argument("--workdir", type=Path, help="keep logs and output here (default: a temp dir, removed)")
    args = parser.parse_args(argv)
    count = getattr(args, unit)
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(CONTENDERS)
    if unknown or not args.only:
        parser.error(f"--only takes a subset of {','.join(CONTENDERS)}")
    if min(count, args.repeat, args.platform_shards) < 1:
        parser.error(f"--{unit}, --repeat and --platform-shards must be positive")
    if any("=" not in item for item in args.platform_env):
        parser.error("--platform-env takes NAME=VALUE")
    if args.cprofile is not None:
        args.cprofile.mkdir(parents=True, exist_ok=True)
    if args.timeout is None:
        args.timeout = 300 + 0.02 * count
    return args


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    # Default SIGTERM handling would skip every `finally`: the fake and the running contender would outlive us.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_bench(
        args,
        count=args.packages,
        count_key="packages",
        workdir_prefix="bench-npm-",
        base_env=clean_env(),
        write_names_to=lambda path: write_names(path, args.packages),
        open_fake=lambda workdir, env: fake_registry(args.packages, args.seed, workdir, env),
        describe_fake=lambda fake: (
            f"fake npm registry at {fake.registry_url} (pid {fake.proc.pid}), {args.packages} packages"
        ),
        bench_class=Bench,
    )


def run_bench(
    args: argparse.Namespace,
    *,
    count: int,
    count_key: str,
    workdir_prefix: str,
    base_env: dict[str, str],
    write_names_to: Callable[[Path], None],
    open_fake: Callable[[Path, dict[str, str]], contextlib.AbstractContextManager[Any]],
    describe_fake: Callable[[Any], str],
    bench_class: type[Bench],
) -> int:
    """Run every contender ``args.repeat`` times against one fake, print the table, write ``--json``.

    Shared by ``bench.npm_crawl`` and ``bench.pypi_crawl``: ``count`` packages (or projects), the names
    written by ``write_names_to``, the fake opened by ``open_fake(workdir, env)``.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    keep = args.workdir is not None
    workdir = args.workdir.resolve() if keep else Path(tempfile.mkdtemp(prefix=workdir_prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[Result]] = {name: [] for name in args.only}
    try:
        names_file = workdir / "names.txt"
        write_names_to(names_file)
        fake_env = {**base_env, "PYTHONPATH": str(REPO_ROOT)}
        with open_fake(workdir, fake_env) as fake:
            print(describe_fake(fake))
            bench = bench_class(
                packages=count,
                names_file=names_file,
                workdir=workdir,
                fake=fake,
                base_env=base_env,
                timeout=args.timeout,
                raw_concurrency=args.raw_concurrency,
                platform_settings=args.platform_set,
                platform_shards=args.platform_shards,
                platform_env=dict(item.split("=", 1) for item in args.platform_env),
                cprofile_dir=args.cprofile.resolve() if args.cprofile else None,
            )
            # Interleaved (a b c a b c …) so a burst of other load on the machine hits all contenders alike.
            for attempt in range(1, args.repeat + 1):
                for contender in args.only:
                    print(f"running {contender} ({attempt}/{args.repeat}) …", flush=True)
                    result = bench.run(contender)
                    runs[contender].append(result)
                    _report_run(result)
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    # Best of N: other load on a shared machine only ever makes a run slower.
    results = {name: max(done, key=lambda r: r.items_per_s) for name, done in runs.items() if done}
    print()
    print(render(results, count))
    if args.json:
        payload = {
            count_key: count,
            "seed": args.seed,
            "size_profile": "realistic",
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "platform": platform_module.platform(),
            },
            "repeat": args.repeat,
            "results": {name: r.as_dict() for name, r in results.items()},
            "runs": {name: [r.as_dict() for r in done] for name, done in runs.items()},
            "checks": [asdict(c) | {"verdict": c.verdict} for c in checks(results, count)],
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    failed = [r for done in runs.values() for r in done if r.usage.returncode != 0 or r.usage.timed_out]
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
