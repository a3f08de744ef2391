"""The PostgreSQL metadata DB going away: refused, black-holed on a new connection, or gone dark under an
open one. A call holds and succeeds once the database is back; an outage longer than the retry window fails
the call within it (it never blocks for ever)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from crawler.meta import MetaDB
from crawler.meta.db import MetaDBUnavailable
from tests import faults
from tests.fakes.outage_proxy import outage_proxy

pytestmark = pytest.mark.faults


def through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@contextmanager
def database_behind_a_proxy(pg_url: str) -> Iterator[tuple[Any, str]]:
    """An outage proxy in front of the test database, and the URL that goes through it."""
    target = urlsplit(pg_url)
    with outage_proxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        yield proxy, through(pg_url, proxy.port)


@contextmanager
def npm_sync_behind_a_proxy(workspace: Any, pg_url: str, seed: int) -> Iterator[tuple[Any, Any, dict[str, str]]]:
    """A fake npm registry, the proxied database, and the environment of a crawl between them."""
    from tests.fakes.npm import FakeNpmRegistry

    with (
        FakeNpmRegistry(packages=300, seed=seed, latency=0.01).serve() as fake,
        database_behind_a_proxy(pg_url) as (proxy, url),
    ):
        env = {
            **workspace.env,
            "NPM_REGISTRY_URL": fake.registry_url,
            "NPM_CHANGES_URL": fake.changes_url,
            "META_DB_URL": url,
        }
        yield fake, proxy, env


def back_in(proxy, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, proxy.set_mode, ("pass",))
    timer.start()
    return timer


@pytest.mark.parametrize(
    ("mode", "cut"),
    [("refuse", True), ("blackhole", True), ("blackhole", False)],
    ids=["refused", "black-holed", "dark-under-an-open-connection"],
)
def test_a_call_holds_through_an_outage_and_succeeds(pg_url, mode, cut):
    with database_behind_a_proxy(pg_url) as (proxy, url):
        meta = MetaDB.connect(url, statement_timeout=1, retry_seconds=30)
        meta.save_cursor("src", "1")
        proxy.set_mode(mode, cut=cut)
        timer = back_in(proxy, 4)
        started = time.monotonic()
        meta.save_cursor("src", "2")  # holds until the database is back
        elapsed = time.monotonic() - started
        timer.join()
        assert 3.5 <= elapsed < 15, elapsed
        assert meta.get_cursor("src") == "2"
        assert meta.add_failed("src", "boom") > 0  # and the connection serves every kind of call
        meta.close()
    faults.record("(metadata DB)", f"PostgreSQL {mode}{'' if cut else ' under an open connection'} 4 s", 1)


def test_an_outage_longer_than_the_retry_window_fails_the_call_in_time(pg_url):
    with database_behind_a_proxy(pg_url) as (proxy, url):
        meta = MetaDB.connect(url, statement_timeout=1, retry_seconds=3)
        proxy.set_mode("blackhole", cut=False)
        started = time.monotonic()
        with pytest.raises(Exception) as failure:
            meta.save_cursor("src", "2")
        elapsed = time.monotonic() - started
        assert "OperationalError" in type(failure.value).__name__ or "connection" in str(failure.value).lower()
        assert elapsed < 3 + 10 + 2, elapsed  # the window, plus one back-off and one timeout
        proxy.set_mode("pass")
        # given up: for the retry window, calls fail at once (a crawl stopping on a lost DB stops in seconds)
        started = time.monotonic()
        with pytest.raises(MetaDBUnavailable):
            meta.get_cursor("src")
        assert time.monotonic() - started < 0.5
        time.sleep(3)
        assert meta.get_cursor("src") is None  # the write was not committed; the DB is usable again
        meta.close()


@pytest.mark.slow
def test_a_metadata_db_outage_mid_crawl_loses_nothing(workspace, pg_url):
    """An npm sync whose PostgreSQL metadata DB is refused, then dark under its open connection, then back:
    the crawl holds, then finishes with everything stored, its cursor at the feed's end, exit 0."""
    with npm_sync_behind_a_proxy(workspace, pg_url, seed=29) as (fake, proxy, env):

        def outage() -> None:
            proxy.set_mode("refuse")  # the database is down...
            time.sleep(5)
            proxy.set_mode("blackhole", cut=False)  # ...then the path to it goes dark under the open connection...
            time.sleep(5)
            proxy.set_mode("pass")  # ...then it is back

        settings = {"NPM_CHANGES_PAGE_SIZE": 20, "BATCH_MAX_RECORDS": 20, "META_DB_TIMEOUT": 2}
        status, stderr = workspace.crawl_through(outage, fake, "npm", "mode=incremental", settings=settings, env=env)
        assert status == 0, stderr.decode()[-3000:]
        assert b"is unreachable" in stderr, "the outage never met a call"
        positions = fake.feed_positions()
        rows = workspace.query("SELECT DISTINCT name FROM npm_package_history", **env)
        assert {row["name"] for row in rows} == set(positions)
        with MetaDB.connect(env["META_DB_URL"]) as meta:
            assert meta.get_cursor("npm") == str(max(positions.values()))
            (run,) = meta.last_runs("npm")
        assert run["finish_reason"] == "finished" and not run["stats"].get("store/batch_failures")
    faults.record("npm", "PostgreSQL metadata DB refused 5 s, then dark under its connection 5 s, mid-crawl", 1)


@pytest.mark.slow
def test_a_metadata_db_outage_longer_than_the_retries_fails_the_run_and_loses_nothing(workspace, pg_url):
    """The metadata DB gone for longer than META_DB_RETRY_SECONDS and STORE_RETRY_SECONDS: the crawl stops
    with a non-zero exit status, in bounded time, its cursor behind what it stored; once the database is
    back, the next run completes the sync."""
    with npm_sync_behind_a_proxy(workspace, pg_url, seed=31) as (fake, proxy, env):
        settings = {
            "NPM_CHANGES_PAGE_SIZE": 20,
            "BATCH_MAX_RECORDS": 20,
            "META_DB_TIMEOUT": 1,
            "META_DB_RETRY_SECONDS": 2,
            "STORE_RETRY_SECONDS": 4,
        }
        started = time.monotonic()
        # dark for good (as far as this run can wait)
        status, stderr = workspace.crawl_through(
            lambda: proxy.set_mode("blackhole", cut=False), fake, "npm", "mode=incremental", settings=settings, env=env
        )
        elapsed = time.monotonic() - started
        assert status not in (0, -9), stderr.decode()[-3000:]
        assert elapsed < 45, elapsed  # not a retry window (or a timeout) per metadata call
        proxy.set_mode("pass")
        positions = fake.feed_positions()
        with MetaDB.connect(env["META_DB_URL"]) as meta:
            cursor = meta.get_cursor("npm")
        stored = {row["name"] for row in workspace.query("SELECT DISTINCT name FROM npm_package_history", **env)}
        if cursor is not None:
            covered = {name for name, seq in positions.items() if seq <= int(cursor)}
            assert covered <= stored, "the cursor is ahead of what was stored"
        workspace.crawl("npm", "mode=incremental", settings={"NPM_CHANGES_PAGE_SIZE": 20}, **env)
        stored = {row["name"] for row in workspace.query("SELECT DISTINCT name FROM npm_package_history", **env)}
        assert stored == set(positions)
        with MetaDB.connect(env["META_DB_URL"]) as meta:
            assert meta.get_cursor("npm") == str(max(positions.values()))
    faults.record("npm", "PostgreSQL metadata DB dark for longer than the run's retries, then back", 1)
