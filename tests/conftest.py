"""Shared fixtures: loopback fakes, and real crawls run as `scrapy` subprocesses."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.npm import FakeNpmRegistry
from tests.fakes.pypi import FakePyPI
from tests.fakes.s3 import s3_server  # noqa: F401  (a session fixture for every test folder)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Workspace:
    """A folder a crawl runs in, with its own data folder and metadata DB."""

    path: Path
    env: dict[str, str]

    @property
    def data(self) -> Path:
        return self.path / "data"

    def scrapy(
        self, *args: str, timeout: float = 120, check: bool = True, exit_status: int = 0, **env: str
    ) -> subprocess.CompletedProcess:
        """Run ``scrapy <args>`` here; with ``check``, assert it exits with ``exit_status`` (for a crawl:
        4 when its monitors fail, see crawler/commands/crawl.py)."""
        result = subprocess.run(
            [sys.executable, "-m", "scrapy", *args],
            cwd=self.path,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != exit_status:
            raise AssertionError(
                f"scrapy {' '.join(args)} exited {result.returncode}, not {exit_status}:\n{result.stderr[-4000:]}"
            )
        return result

    def crawl(self, spider: str, *arguments: str, settings: dict[str, Any] | None = None, **kw: Any):
        args = ["crawl", spider]
        for argument in arguments:
            args += ["-a", argument]
        # the policies' back-off is seconds long; tests keep the shape, not the wait
        for name, value in {"RETRY_BACKOFF_BASE": 0.05, **(settings or {})}.items():
            args += ["-s", f"{name}={value}"]
        return self.scrapy(*args, **kw)

    def crawl_through(
        self,
        fault: Callable[[], None],
        fake: Any,
        spider: str,
        *arguments: str,
        settings: dict[str, Any],
        env: dict[str, str],
        after_requests: int = 60,
        timeout: float = 240,
    ) -> tuple[int, bytes]:
        """Start a crawl, stage ``fault()`` once ``fake`` has served ``after_requests`` requests, then let the
        crawl end; its exit status and stderr."""
        args = [sys.executable, "-m", "scrapy", "crawl", spider]
        for argument in arguments:
            args += ["-a", argument]
        for name, value in settings.items():
            args += ["-s", f"{name}={value}"]
        crawl = subprocess.Popen(
            args, cwd=self.path, env={**self.env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            deadline = time.monotonic() + 60
            while fake.total_requests < after_requests and crawl.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert crawl.poll() is None, "the crawl ended before the fault"
            fault()
            _, stderr = crawl.communicate(timeout=timeout)
        finally:
            if crawl.poll() is None:
                crawl.kill()
                crawl.communicate()
        return crawl.returncode, stderr

    def query(self, sql: str, **env: str) -> list[dict[str, Any]]:
        return json.loads(self.scrapy("query", "--format", "json", sql, **env).stdout)

    def meta(self):
        from crawler.meta import MetaDB

        return MetaDB.connect(f"sqlite:///{self.data / '_meta' / 'meta.db'}")


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NPM_", "npm_config", "PYPI_", "PIP_INDEX", "STORAGE_", "META_", "AWS_", "SCRAPY_"))
    }
    env.update(
        # a test that forgets to name an endpoint must hit a dead loopback port, never a real service
        npm_config_registry="http://127.0.0.1:9/",
        PIP_INDEX_URL="http://127.0.0.1:9/simple/",
        GITHUB_API_URL="http://127.0.0.1:9/",
        SCRAPY_SETTINGS_MODULE="crawler.settings",
        PYTHONPATH=str(ROOT),
        STORAGE_URI=str(tmp_path / "data"),
        BATCH_IDLE_SECONDS="1",
        NPM_STALE_RETRY_DELAY="0.1",
    )
    return Workspace(tmp_path, env)


@pytest.fixture
def fake_npm() -> Iterator[FakeNpmRegistry]:
    # feed numbering starts high so that a reset_seq() visibly goes backwards
    with FakeNpmRegistry(packages=50, seed=7, first_seq=5000).serve() as fake:
        yield fake


@pytest.fixture
def npm_env(fake_npm: FakeNpmRegistry) -> dict[str, str]:
    return {"NPM_REGISTRY_URL": fake_npm.registry_url, "NPM_CHANGES_URL": fake_npm.changes_url}


@pytest.fixture
def fake_pypi() -> Iterator[FakePyPI]:
    with FakePyPI(projects=40, seed=5).serve() as fake:
        yield fake


@pytest.fixture
def pypi_env(fake_pypi: FakePyPI) -> dict[str, str]:
    return {"PYPI_URL": fake_pypi.url}


# -- PostgreSQL (metadata DB) ------------------------------------------------------------------


@functools.cache
def _pg_base_url() -> str | None:
    try:
        import psycopg
    except ImportError:
        return None
    env = os.environ.get("META_TEST_PG_URL")
    candidates = [env] if env else [f"postgresql://{u}@127.0.0.1:5432/test" for u in ("root", "postgres")]
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    return None


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh, empty PostgreSQL schema (dropped afterwards)."""
    base = _pg_base_url()
    if base is None:
        pytest.skip("PostgreSQL not reachable at 127.0.0.1:5432 (database test)")
    import psycopg

    schema = f"meta_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- Redis (distributed crawls) ----------------------------------------------------------------------

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the machine's Redis (``.ci/run`` starts it); its keys are deleted after."""
    import redis

    server = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        server.ping()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_TEST_URL} (start it as .ci/run does): {exc}")
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(server.scan_iter(f"{prefix}:*"))
    if keys:
        server.delete(*keys)
    server.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault suite's figures (tests/faults.py), when fault tests ran."""
    from tests import faults

    table = faults.summary()
    if table is not None:
        terminalreporter.write_sep("=", "fault suite: faults injected and what was lost")
        terminalreporter.write_line(table)
