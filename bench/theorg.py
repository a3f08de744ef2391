"""Benchmark the TheOrg crawl: plain HTTP against the browser, on the loopback fake TheOrg.

    python -m bench.theorg [--http-pages 500] [--browser-pages 100,500] [--mixed-pages 300] [--json out.json]

The fake (``tests.fakes.theorg``) runs in its own process. Each run is ``scrapy crawl theorg -a orgs_file=…``
as its own subprocess, into a fresh data folder, with no politeness delay (the policy's concurrency stays):

* ``http``: Pages Router and App Router pages only, ``THEORG_BROWSER=false``: every page over plain HTTP;
* ``browser@N``: script-filled charts only: every page read over HTTP, then rendered in Chromium (N pages;
  the default runs 100 and 500 to show whether the browser's memory stays flat as contexts are recycled);
* ``mixed``: the fake's default mix (Pages Router, App Router, script-filled): the share of pages served
  without a browser.

Peak memory is the crawl's whole process tree (the Python process, Playwright's driver and every
Chromium process), sampled every 0.2 s with psutil: the sum of proportional set sizes (PSS: memory the
processes share counted once), and the plain RSS sum beside it (shared pages counted in every process).
Pages/s counts stored companies over the crawl's wall time (interpreter and browser start-up included).
Ratios are printed against the ``http`` run of the same invocation, and browser@500 against browser@100.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    name: str
    pages: int
    stored: int
    wall_s: float
    pages_per_s: float
    peak_pss_mb: float
    peak_rss_sum_mb: float
    peak_processes: int
    browser_pages: int
    http_pages: int
    contexts: int
    #: browser runs: (pages rendered, PSS of the tree then in MB, of the crawl process alone) every 100 pages
    checkpoints: list[tuple[int, float, float]] = field(default_factory=list)

    @property
    def share_without_browser(self) -> float:
        return 1 - self.browser_pages / self.stored if self.stored else 0.0


def start_fake(companies: int, shapes: str) -> tuple[subprocess.Popen, str]:
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.theorg", "--companies", str(companies), "--shapes", shapes],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = fake.stdout.readline() if fake.stdout else ""
    return fake, json.loads(line)["url"]


def tree_memory(process: psutil.Process) -> tuple[int, int, int]:
    """(PSS, RSS, process count) of a process and all its descendants. PSS counts pages the browser's
    processes share once; the RSS sum counts them in every process (an upper bound)."""
    pss, rss, count = 0, 0, 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, 0, 0
    for member in members:
        try:
            info = member.memory_full_info()
        except psutil.Error:
            continue
        pss, rss, count = pss + getattr(info, "pss", info.rss), rss + info.rss, count + 1
    return pss, rss, count


def rendered_pages(url: str, pages: int) -> int:
    """Pages of a script-only run rendered so far: the fake's page requests beyond the first per page."""
    with urllib.request.urlopen(url + "_fake/requests", timeout=5) as answer:
        counts = json.load(answer)
    return sum(count - 1 for key, count in counts.items() if key.startswith("org/"))


def tree_memory_of(process: psutil.Process) -> int:
    """PSS of the crawl process alone."""
    try:
        info = process.memory_full_info()
    except psutil.Error:
        return 0
    return getattr(info, "pss", info.rss)


def crawl(name: str, pages: int, shapes: str, settings: dict[str, Any]) -> Run:
    fake, url = start_fake(pages, shapes)
    folder = Path(tempfile.mkdtemp(prefix=f"bench-theorg-{name}-"))
    try:
        slugs = folder / "slugs.txt"
        slugs.write_text("".join(f"company-{i:04d}\n" for i in range(pages)))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("THEORG_", "STORAGE_", "META_", "SCRAPY_"))},
            "PYTHONPATH": str(REPO_ROOT),
            "SCRAPY_SETTINGS_MODULE": "crawler.settings",
            "STORAGE_URI": str(folder / "data"),
            "THEORG_URL": url,
            "LOG_LEVEL": "WARNING",
        }
        args = [sys.executable, "-m", "scrapy", "crawl", "theorg", "-a", f"orgs_file={slugs}"]
        base = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": "false", "SPIDERMON_ENABLED": "false"}
        for key, value in {**base, **settings}.items():
            args += ["-s", f"{key}={value}"]
        started = time.monotonic()
        child = subprocess.Popen(
            args, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        process = psutil.Process(child.pid)
        peak, peak_rss, peak_count = 0, 0, 0
        checkpoints: list[tuple[int, float, float]] = []
        while child.poll() is None:
            pss, rss, count = tree_memory(process)
            peak, peak_rss, peak_count = max(peak, pss), max(peak_rss, rss), max(peak_count, count)
            if shapes == "script":  # every page is fetched twice: plain, then in the browser
                rendered = rendered_pages(url, pages)
                if rendered >= 100 * (len(checkpoints) + 1):
                    own = tree_memory_of(process)
                    checkpoints.append((rendered, round(pss / 2**20, 1), round(own / 2**20, 1)))
            time.sleep(0.2)
        wall = time.monotonic() - started
        stderr = child.stderr.read() if child.stderr else ""
        if child.returncode != 0:
            raise SystemExit(f"{name}: the crawl exited {child.returncode}:\n{stderr[-3000:]}")
        from crawler.meta import MetaDB

        stats = MetaDB.connect(f"sqlite:///{folder / 'data' / '_meta' / 'meta.db'}").last_runs("theorg")[0]["stats"]
        stored = int(stats.get("store/records", 0))
        return Run(
            name=name,
            pages=pages,
            stored=stored,
            wall_s=round(wall, 2),
            pages_per_s=round(stored / wall, 2),
            peak_pss_mb=round(peak / 2**20, 1),
            peak_rss_sum_mb=round(peak_rss / 2**20, 1),
            peak_processes=peak_count,
            browser_pages=int(stats.get("theorg/pages_browser", 0)),
            http_pages=int(stats.get("theorg/pages_http", 0)),
            contexts=int(stats.get("theorg/browser_contexts", 0)),
            checkpoints=checkpoints,
        )
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.theorg", description=__doc__.split("\n")[0])
    parser.add_argument("--http-pages", type=int, default=500)
    parser.add_argument("--browser-pages", default="100,500", help="page counts of the browser runs")
    parser.add_argument("--mixed-pages", type=int, default=300)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)

    runs = [crawl("http", args.http_pages, "next_data,flight", {"THEORG_BROWSER": "false"})]
    for count in (int(n) for n in args.browser_pages.split(",") if n.strip()):
        runs.append(crawl(f"browser@{count}", count, "script", {}))
    if args.mixed_pages:
        runs.append(crawl("mixed", args.mixed_pages, "next_data,flight,script", {}))

    http = runs[0]
    print(
        f"{'run':<14}{'pages':>7}{'stored':>8}{'wall s':>9}{'pages/s':>9}{'x http':>8}{'peak PSS MB':>13}"
        f"{'x http':>8}{'RSS sum MB':>12}{'procs':>7}{'contexts':>10}{'no browser':>12}"
    )
    for run in runs:
        print(
            f"{run.name:<14}{run.pages:>7}{run.stored:>8}{run.wall_s:>9.1f}{run.pages_per_s:>9.1f}"
            f"{run.pages_per_s / http.pages_per_s:>8.2f}{run.peak_pss_mb:>13.1f}"
            f"{run.peak_pss_mb / http.peak_pss_mb:>8.2f}{run.peak_rss_sum_mb:>12.1f}{run.peak_processes:>7}"
            f"{run.contexts:>10}{run.share_without_browser:>12.0%}"
        )
    browser = [run for run in runs if run.name.startswith("browser@")]
    if len(browser) >= 2:
        first, last = browser[0], browser[-1]
        growth = last.peak_pss_mb / first.peak_pss_mb
        print(
            f"browser memory: peak PSS {last.peak_pss_mb:.0f} MB over {last.pages} pages vs "
            f"{first.peak_pss_mb:.0f} MB over {first.pages}: x{growth:.2f} for x{last.pages / first.pages:.0f} pages"
        )
    for run in browser:
        steps = ", ".join(f"{n}: {tree:.0f} MB ({own:.0f} MB crawl process)" for n, tree, own in run.checkpoints)
        print(f"{run.name} PSS after pages rendered: {steps}")
    if args.json:
        args.json.write_text(
            json.dumps([{**asdict(run), "share_without_browser": run.share_without_browser} for run in runs], indent=2)
        )


if __name__ == "__main__":
    main()
