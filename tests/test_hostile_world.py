"""Every source against a hostile world: each endpoint it has points at one loopback server that answers
badly (tests/fakes/hostile.py), and every answer must end as a dead letter — no crash, no hang, no record
of garbage, memory bounded. A case of the fault suite (tests/faults.py) per source and kind of answer.

CI runs a few kinds for every source; ``FAULTS_SCALE=full`` (``make faults``) runs them all.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from typing import Any

import pytest

from crawler.sources import all_sources
from tests import faults
from tests.conftest import Workspace
from tests.fakes.hostile import CASES, HostileServer, serve_hostile

pytestmark = [pytest.mark.slow, pytest.mark.faults]

SOURCES = all_sources()
CI_CASES = ("gzip_bomb", "redirect_loop", "connection_reset")
#: a crawl's peak RSS may not pass this, whatever it was sent
MAX_RSS_MB = 1024
#: what a crawl may not print: an error nothing handled
CRASH_MARKERS = ("Unhandled error", "Task exception was never retrieved")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[(?P<logger>[^\]]+)\]")


#: loggers whose tracebacks mean an error escaped: a callback's (the work middleware turns those into dead
#: letters), the event loop's, Twisted's
CRASH_LOGGERS = ("scrapy.core.scraper", "asyncio", "twisted", "py.warnings")
#: sources that store a record per asked key from what they already hold, whatever the services answer
#: (the email source's pattern from stored addresses); the others may store nothing from a hostile answer
RECORDS_WITHOUT_ANSWERS = {"emails"}


def crashes(stderr: str) -> list[str]:
    """Errors nothing handled: the markers, and tracebacks logged by :data:`CRASH_LOGGERS` (a component
    that logs a handled error with its traceback, or Spidermon reporting a failed monitor, is not one)."""
    found = [marker for marker in CRASH_MARKERS if marker in stderr]
    logger = ""
    for line in stderr.splitlines():
        if match := LOG_LINE.match(line):
            logger = match["logger"]
        elif line.startswith("Traceback (most recent call last)") and logger in CRASH_LOGGERS:
            found.append(f"a traceback logged by {logger}")
    return found


@pytest.fixture(scope="module")
def hostile() -> Any:
    with serve_hostile() as server:
        yield server


def settings_for(source: str, server: HostileServer) -> dict[str, str]:
    """Every endpoint of the source at the hostile server; secrets set so that every path is taken."""
    host_port = server.url.removeprefix("http://").rstrip("/")
    settings: dict[str, str] = {}
    for setting in SOURCES[source].settings:
        if setting.type == "url":
            settings[setting.name] = server.url
        elif setting.secret:
            settings[setting.name] = "hostile-test-secret"
    # the port-43 transport's first server too (the hostile answers name no referral)
    if source == "whois":
        settings["WHOIS_IANA_SERVER"] = host_port
    if source == "theorg":
        settings["THEORG_BROWSER"] = "false"
    return settings


def crawl(workspace: Workspace, source: str, server: HostileServer) -> tuple[int, str, float]:
    """(exit status, stderr, peak RSS in MB) of a crawl of ``source`` against the hostile server."""
    args = [sys.executable, "-m", "scrapy", "crawl", source]
    for name, value in _arguments(source).items():
        args += ["-a", f"{name}={value}"]
    overrides = {
        "RETRY_TIMES": 1,
        "RETRY_BACKOFF_BASE": 0.05,
        "RETRY_BACKOFF_MAX": 0.2,
        "DOWNLOAD_TIMEOUT": 3,
        "REDIRECT_MAX_TIMES": 5,
        # politeness is not what is tested here: no delays between the requests to the one server
        "DOWNLOAD_DELAY": 0,
        "AUTOTHROTTLE_ENABLED": "false",
        "CLOSESPIDER_TIMEOUT": 60,
        **settings_for(source, server),
    }
    for name, value in overrides.items():
        args += ["-s", f"{name}={value}"]
    process = subprocess.Popen(
        args, cwd=workspace.path, env=workspace.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    watcher = PeakMemory(process.pid)
    stderr = process.stderr.read()  # until the crawl closes it
    watcher.stop()
    try:
        process.wait(timeout=150)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"{source} hung against {server.case}")
    return process.returncode, stderr, watcher.peak_mb


class PeakMemory:
    """The crawl's peak RSS, from its own ``VmHWM`` (a child's ``ru_maxrss`` would start at the size of the
    test process it was forked from)."""

    def __init__(self, pid: int) -> None:
        self.path = f"/proc/{pid}/status"
        self.peak_mb = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(0.05):
            try:
                with open(self.path) as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
            except (FileNotFoundError, ProcessLookupError, ValueError):
                return

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


def _arguments(source: str) -> dict[str, str]:
    spider = next(s for s in _spiders() if s.name == source)
    return dict(spider.smoke_arguments)


def _spiders() -> list[Any]:
    from scrapy.spiderloader import SpiderLoader
    from scrapy.utils.project import get_project_settings

    loader = SpiderLoader.from_settings(get_project_settings())
    return [loader.load(name) for name in loader.list()]


@pytest.mark.parametrize("case", CASES if faults.full_scale() else CI_CASES)
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_hostile_answer_ends_as_a_dead_letter(workspace: Workspace, hostile: HostileServer, source, case):
    hostile.case = case
    before = hostile.requests
    code, stderr, rss_mb = crawl(workspace, source, hostile)
    label = f"{source} against {case}"
    assert hostile.requests > before, f"{label}: the crawl sent nothing to the hostile server"
    crashed = crashes(stderr)
    assert not crashed and code in (0, 1, 3, 4), f"{label}: exit {code}, {crashed}\n{stderr[-3000:]}"
    (run,) = workspace.meta().last_runs(source)
    stats = run["stats"]
    if source not in RECORDS_WITHOUT_ANSWERS:
        assert stats.get("store/records", 0) == 0, f"{label}: stored records of a hostile answer"
    assert stats.get("dead_letters", 0) >= 1, f"{label}: no dead letter\n{stderr[-3000:]}"
    assert rss_mb < MAX_RSS_MB, f"{label}: peak RSS {rss_mb:.0f} MB"
    faults.record(source, f"hostile server: {case}", 1, peak_rss_mb=rss_mb)
