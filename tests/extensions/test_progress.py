"""The progress line: its arithmetic on a fake clock and fake stats, its timer, and a real crawl."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from scrapy import Spider
from scrapy.exceptions import NotConfigured
from scrapy.utils.test import get_crawler

from crawler.extensions.progress import Progress, bar, default_interval, format_eta
from tests.monitors import SETTINGS_MODULE


class FakeStats(dict):
    def get_value(self, key: str, default: Any = None) -> Any:
        return self.get(key, default)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rate_backlog_and_eta():
    stats, clock = FakeStats(), Clock()
    progress = Progress(stats, interval=30, rate_window=60, clock=clock)  # type: ignore[arg-type]
    progress.start("npm")

    clock.now += 30
    stats.update({"item_scraped_count": 300, "response_received_count": 310, "dead_letters": 2})
    assert progress.line() == "progress: 300 items (10.0/s), 310 responses, 2 dead letters"

    stats["npm/backlog"] = 6000
    clock.now += 30
    stats["item_scraped_count"] = 900  # 900 items in the 60 s window: 15/s, 6000 left: 400 s
    assert progress.line() == (
        "progress: 900 items (15.0/s), 310 responses, 2 dead letters, "
        "backlog 6000, ETA 0:06:40 [===                 ] 13%"
    )

    # the rate covers the last 60 s only: a stall shows at once, and the ETA becomes unknown
    clock.now += 30
    assert progress.line().startswith("progress: 900 items (10.0/s)")  # 600 items in the last 60 s
    clock.now += 30
    assert progress.line().endswith(
        "(0.0/s), 310 responses, 2 dead letters, backlog 6000, ETA unknown [===                 ] 13%"
    )


def test_a_distributed_crawl_shows_its_shared_queue():
    stats, clock = FakeStats({"distributed/queued": 740, "distributed/workers": 3}), Clock()
    progress = Progress(stats, interval=1, clock=clock)  # type: ignore[arg-type]
    progress.start("npm")
    clock.now += 1
    assert progress.line().endswith("0 dead letters, shared queue 740 on 3 workers")


def test_another_sources_backlog_is_not_shown():
    stats, clock = FakeStats({"pypi/backlog": 5}), Clock()
    progress = Progress(stats, interval=1, clock=clock)  # type: ignore[arg-type]
    progress.start("npm")
    clock.now += 1
    assert "backlog" not in progress.line()


def test_eta_format_keeps_hours_past_a_day():
    assert format_eta(0) == "0:00:00"
    assert format_eta(59.6) == "0:01:00"
    assert format_eta(26 * 3600 + 3 * 60 + 4) == "26:03:04"


def test_interval_zero_disables_it_and_the_default_is_30_s():
    with pytest.raises(NotConfigured):
        Progress.from_crawler(get_crawler(Spider, {"PROGRESS_INTERVAL": 0}))
    assert Progress.from_crawler(get_crawler(Spider)).interval == 30.0


async def test_the_line_is_logged_every_interval_and_at_close(caplog: pytest.LogCaptureFixture):
    stats = FakeStats({"item_scraped_count": 0})
    progress = Progress(stats, interval=0.05)  # type: ignore[arg-type]
    spider = Spider(name="npm")
    with caplog.at_level("INFO", logger="crawler.extensions.progress"):
        progress.spider_opened(spider)  # under a running asyncio loop: Scrapy's asyncio looping call
        await asyncio.sleep(0.22)
        stats["item_scraped_count"] = 7
        progress.spider_closed(spider, "finished")
        await asyncio.sleep(0.1)  # stopped: nothing more
    lines = [r.getMessage() for r in caplog.records]
    assert 4 <= len(lines) <= 6
    assert all(line.startswith("progress: ") for line in lines)
    assert lines[-1].startswith("progress: 7 items")


@pytest.mark.slow
def test_a_crawl_logs_progress(workspace, fake_npm, npm_env):
    fake_npm.latency = 0.05  # long enough a crawl for a few 0.2 s ticks
    result = workspace.crawl(
        "npm",
        "mode=incremental",
        settings={"PROGRESS_INTERVAL": 0.2, "NPM_CHANGES_PAGE_SIZE": 10},
        SCRAPY_SETTINGS_MODULE=SETTINGS_MODULE,
        **npm_env,
    )
    lines = re.findall(r"\[crawler\.extensions\.progress\] INFO: (progress: .*)", result.stderr)
    assert len(lines) >= 2, result.stderr[-3000:]
    pattern = (
        r"progress: \d+ items \(\d+\.\d/s\), \d+ responses, \d+ dead letters"
        r"(, backlog \d+, ETA (\d+:\d\d:\d\d|unknown) \[[= ]{20}\] \d+%)?"
    )
    assert all(re.fullmatch(pattern, line) for line in lines), lines
    assert lines[-1].startswith(f"progress: {fake_npm.packages} items")

    quiet = workspace.crawl(
        "npm",
        "packages=pkg-000001",
        settings={"PROGRESS_INTERVAL": 0},
        SCRAPY_SETTINGS_MODULE=SETTINGS_MODULE,
        **npm_env,
    )
    assert "progress:" not in quiet.stderr
    assert "Disabled crawler.extensions.progress.Progress" not in quiet.stderr  # off on purpose: not a warning


def test_a_terminal_gets_a_line_every_few_seconds_a_log_file_every_30(monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert default_interval(None) == 5.0
    assert default_interval("crawl.log") == 30.0
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert default_interval(None) == 30.0
    assert Progress.from_crawler(get_crawler(Spider, {"LOG_FILE": "x.log"})).interval == 30.0
    assert Progress.from_crawler(get_crawler(Spider, {"PROGRESS_INTERVAL": "2"})).interval == 2.0


def test_the_bar_shows_the_share_done():
    assert bar(0, 10) == "[                    ] 0%"
    assert bar(5, 5) == "[==========          ] 50%"
    assert bar(7, 0) == "[====================] 100%"
