"""A hostile Retry-After in a real crawl: capped, waited for in the scheduler, and no obstacle to a stop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_a_crawl_told_to_wait_forever_stops_at_once_on_sigterm(workspace, fake_npm, npm_env):
    names = sorted(fake_npm.package_names())[:20]
    fake_npm.rate_limit_every = 1  # every answer: 429, come back in 31 years
    fake_npm.rate_limit_retry_after = 999_999_999
    crawl = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "crawl", "npm", "-a", "packages=" + ",".join(names)],
        cwd=workspace.path,
        env={**workspace.env, **npm_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while fake_npm.total_requests < len(names) and crawl.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_npm.total_requests >= len(names), "the crawl never asked for every package"
        # every request now waits for its retry: in the scheduler, not in a download slot
        stopped_at = time.monotonic()
        crawl.send_signal(signal.SIGTERM)
        _, stderr = crawl.communicate(timeout=60)
        took = time.monotonic() - stopped_at
    finally:
        if crawl.poll() is None:
            crawl.kill()
            crawl.communicate()
    assert crawl.returncode == 1, stderr[-3000:]  # not finished: its finish reason is "shutdown"
    assert "finish_reason': 'shutdown'" in stderr
    assert took < 20, f"the stop took {took:.0f} s"
    assert fake_npm.total_requests == len(names)  # no retry was sent before its (capped) time
    assert workspace.meta().get_cursor("npm") is None
