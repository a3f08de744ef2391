"""Nothing is lost (DESIGN §3.1): a crawl killed with SIGKILL at any point resumes, the union of what
is stored covers every package, and the saved cursor is never ahead of the stored data."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests import faults
from tests.fakes.npm import FakeNpmRegistry

pytestmark = [pytest.mark.slow, pytest.mark.faults]

PACKAGES = 1200 if faults.full_scale() else 300
SETTINGS = {
    "NPM_CHANGES_PAGE_SIZE": "20",
    "BATCH_MAX_RECORDS": "15",
    "BATCH_IDLE_SECONDS": "0.3",
    "RETRY_BACKOFF_BASE": "0.05",
}


def start_crawl(workspace, env: dict[str, str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "scrapy", "crawl", "npm", "-a", "mode=incremental"]
    for name, value in SETTINGS.items():
        args += ["-s", f"{name}={value}"]
    return subprocess.Popen(
        args, cwd=workspace.path, env={**workspace.env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def assert_cursor_not_ahead(workspace, positions: dict[str, int]) -> None:
    cursor = workspace.meta().get_cursor("npm")
    if cursor is None:
        return
    covered = {name for name, seq in positions.items() if seq <= int(cursor)}
    stored = {row["name"] for row in workspace.query("SELECT DISTINCT name FROM npm_package_history")}
    missing = covered - stored
    assert not missing, f"cursor {cursor} is ahead of stored data: {sorted(missing)[:5]}"


def test_sigkill_at_several_points_loses_nothing(workspace):
    with FakeNpmRegistry(packages=PACKAGES, seed=11, latency=0.004).serve() as fake:
        env = {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        positions = fake.feed_positions()
        kills = 0
        # Kill after a growing number of requests served, so the points fall before the first flush,
        # between flushes and cursor saves, and late in the feed.
        # at full scale every point falls within the work left (each run resumes from the saved cursor)
        points = range(5, 400, 12) if faults.full_scale() else (5, 40, 90, 150, 230)
        for kill_after in points:
            fake.reset_counters()
            process = start_crawl(workspace, env)
            deadline = time.monotonic() + 60
            while fake.total_requests < kill_after and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
            assert_cursor_not_ahead(workspace, positions)
        assert kills >= 3
        # a last, uninterrupted run completes the sync
        final = start_crawl(workspace, env)
        assert final.wait(timeout=120) == 0
    assert_cursor_not_ahead(workspace, positions)
    stored = {row["name"] for row in workspace.query("SELECT name FROM npm_package")}
    assert stored == set(positions)
    cursor = int(workspace.meta().get_cursor("npm"))
    # the uninterrupted run saved the feed's end: checkpoints reach the store in page order, each after
    # the records of its pages (a checkpoint released in one callback used to overtake another's records)
    assert cursor == max(positions.values())
    faults.record("npm", "SIGKILL during an incremental sync", kills)
