"""The status dashboard in a real browser: ``scrapy serve`` (a subprocess on loopback) over a store that
two crawls of the fake npm registry filled, opened in Debian's headless Chromium through Playwright. The
plotted numbers must be the stored ones (as ``scrapy query`` and the metadata DB count them), and a
screenshot is saved (its path is printed; ``DASHBOARD_SCREENSHOT=<path>`` also writes the README's)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Workspace

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: skipped on a developer's machine without Chromium, never in CI (.ci/run installs it): there it fails
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium; .ci/run installs it)",
)
KEY = "dashboard-test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def crawled(workspace: Workspace, fake_npm, npm_env) -> Workspace:
    """Three runs: one with a dead letter (the fake's one-off 503, no retries), a clean one, and one that
    follows the changes feed from a few changes before its head (it saves a cursor)."""
    names = sorted(fake_npm.package_names())
    workspace.crawl(
        "npm",
        f"packages=fault-unavailable,{','.join(names[:3])}",
        settings={"RETRY_TIMES": 0},
        exit_status=4,
        **npm_env,
    )
    workspace.crawl("npm", f"packages={','.join(names[3:10])}", **npm_env)
    workspace.crawl("npm", "mode=incremental", f"since={fake_npm.last_seq - 5}", **npm_env)
    return workspace


@pytest.fixture
def served(crawled: Workspace) -> Iterator[str]:
    """``scrapy serve`` over the crawled store; yields its base URL and stops it afterwards."""
    port = free_port()
    env = {**crawled.env, "QUERY_API_KEYS": KEY, "QUERY_ISOLATION": "thread", "QUERY_WORKERS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=crawled.path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"scrapy serve exited {server.returncode}: {server.stderr.read()[-3000:]}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "scrapy serve did not answer /health within 60 s"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def test_the_dashboard_needs_the_key(served: str):
    anonymous = httpx.get(f"{served}/", timeout=10)
    assert anonymous.status_code == 401
    assert any(v.startswith("Basic ") for v in anonymous.headers.get_list("www-authenticate"))  # a browser asks
    assert httpx.get(f"{served}/", auth=("anyone", "wrong"), timeout=10).status_code == 401
    page = httpx.get(f"{served}/", auth=("anyone", KEY), timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "<script" not in page.text and "http://" not in page.text.replace(served, "")  # nothing from elsewhere


@needs_chromium
def test_the_dashboard_plots_the_stored_numbers_in_chromium(served: str, crawled: Workspace, tmp_path: Path):
    from playwright.sync_api import sync_playwright

    per_day = crawled.query(
        "SELECT printf('%04d-%02d-%02d', year, month, day) AS day, count(*) AS n FROM npm_package_history GROUP BY ALL"
    )
    (total,) = crawled.query("SELECT count(*) AS n FROM npm_package_history")
    runs = list(reversed(crawled.meta().last_runs("npm")))
    items_per_run = [run["items"] for run in runs]
    assert items_per_run[:2] == [3, 7] and len(runs) == 3 and runs[2]["items"] > 0
    assert total["n"] == sum(items_per_run)
    stored_cursors = [c for c in crawled.meta().cursors("npm") if not c["cursor_key"].startswith("etag:")]
    assert [c["cursor_key"] for c in stored_cursors] == ["default"]  # the feed's position

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context(
                http_credentials={"username": "operator", "password": KEY}, viewport={"width": 1280, "height": 900}
            )
            page = context.new_page()
            page.set_default_timeout(20_000)
            response = page.goto(f"{served}/")
            assert response is not None and response.status == 200

            source = page.locator('section[data-source="npm"]')
            for day in per_day:  # records stored per day: the bar of each day is the stored count
                bar = source.locator(f'[data-chart="npm/per-day"] rect.bar[data-key="{day["day"]}"]')
                assert bar.get_attribute("data-value") == str(day["n"])
                box = bar.bounding_box()
                assert box is not None and box["height"] > 10  # drawn, and tall: the only day with records
            items = source.locator('[data-chart="npm/run-items"] rect.bar')
            assert items.count() == 3
            assert [items.nth(n).get_attribute("data-value") for n in range(3)] == [str(n) for n in items_per_run]
            assert [items.nth(n).get_attribute("data-key") for n in range(3)] == [run["run_id"] for run in runs]
            heights = [items.nth(n).bounding_box()["height"] for n in range(2)]
            assert heights[1] > heights[0] > 0  # 7 items plotted taller than 3
            # the first run: 1 dead letter of 4 inputs, a 25 % error rate; the others none
            rates = source.locator('[data-chart="npm/run-error-rate"] rect.bar')
            assert [rates.nth(n).get_attribute("data-value") for n in range(3)] == ["25", "0", "0"]
            dead = source.locator('[data-chart="npm/dead-letters"] rect.bar')
            assert dead.count() == 1 and dead.get_attribute("data-label") == "http_503"
            assert dead.get_attribute("data-value") == "1"
            stored_bytes = source.locator('[data-chart="npm/bytes"] rect.bar[data-label="npm"]')
            partitions = crawled.meta().partitions("npm")
            assert stored_bytes.get_attribute("data-value") == str(sum(p.bytes for p in partitions))
            cursors = source.locator('[data-chart="npm/cursor-lag"] rect.bar')
            assert cursors.count() == 1 and cursors.get_attribute("data-label") == "default"
            assert page.locator('[data-tile="records stored"] b').inner_text() == str(total["n"])
            assert page.locator('[data-tile="dead letters waiting"] b').inner_text() == "1"
            # every other source is there too, never run
            assert page.locator("section.source").count() >= 2
            assert "never run" in page.locator("section.source:not([data-source='npm'])").first.inner_text()

            artifact = tmp_path / "dashboard.png"
            page.screenshot(path=str(artifact), full_page=True)
            print(f"dashboard screenshot: {artifact}")
            assert artifact.stat().st_size > 10_000
            if os.environ.get("DASHBOARD_SCREENSHOT"):
                page.screenshot(path=os.environ["DASHBOARD_SCREENSHOT"], full_page=True)
        finally:
            browser.close()
