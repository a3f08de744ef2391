"""Several workers share one crawl through the machine's real Redis and PostgreSQL (issue: distributed
crawling). Every worker is a real ``scrapy crawl`` process; the registry is the loopback fake."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from crawler.meta import MetaDB
from tests.conftest import REDIS_TEST_URL, Workspace
from tests.fakes.npm import FakeNpmRegistry

pytestmark = pytest.mark.slow

SETTINGS = {
    "NPM_CHANGES_PAGE_SIZE": "40",
    "BATCH_MAX_RECORDS": "25",
    "BATCH_IDLE_SECONDS": "0.3",
    "RETRY_BACKOFF_BASE": "0.05",
    "DISTRIBUTED_HEARTBEAT_SECONDS": "0.3",
    "DISTRIBUTED_WORKER_TIMEOUT": "1.5",
    "DISTRIBUTED_WAIT_SECONDS": "20",
}


def start_worker(workspace: Workspace, env: dict[str, str], *arguments: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "scrapy", "crawl", "npm"]
    for argument in arguments:
        args += ["-a", argument]
    for name, value in SETTINGS.items():
        args += ["-s", f"{name}={value}"]
    log = open(workspace.path / f"worker-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 (closed by the OS at exit)
    return subprocess.Popen(args, cwd=workspace.path, env={**workspace.env, **env}, stdout=log, stderr=log)


def logs(workspace: Workspace) -> str:
    return "\n".join(path.read_text()[-3000:] for path in sorted(Path(workspace.path).glob("worker-*.log")))


@pytest.fixture
def shared_env(redis_prefix: str, pg_url: str) -> dict[str, str]:
    return {"REDIS_URL": REDIS_TEST_URL, "DISTRIBUTED_KEY_PREFIX": redis_prefix, "META_DB_URL": pg_url}


def wait_all(workspace: Workspace, workers: list[subprocess.Popen], timeout: float = 150) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=max(deadline - time.monotonic(), 1)))
        except subprocess.TimeoutExpired:
            for other in workers:
                other.kill()
            pytest.fail(f"workers did not finish in {timeout} s:\n{logs(workspace)}")
    return codes


def stored_names(workspace: Workspace, env: dict[str, str]) -> list[str]:
    return [row["name"] for row in workspace.query("SELECT name FROM npm_package", **env)]


def test_two_workers_split_a_full_sync_and_store_every_package_once(workspace, shared_env):
    with FakeNpmRegistry(packages=400, seed=3, latency=0.02).serve() as fake:
        env = {**shared_env, "NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        positions = fake.feed_positions()
        packages, last_seq = set(positions), str(max(positions.values()))
        workers = [start_worker(workspace, env, "mode=full") for _ in range(2)]
        assert wait_all(workspace, workers) == [0, 0], logs(workspace)
        fetched = {name: count for name, count in fake.requests.items() if name in packages}
    names = stored_names(workspace, env)
    assert sorted(names) == sorted(packages)  # every package, once after dedupe
    assert set(fetched) == packages
    with MetaDB.connect(shared_env["META_DB_URL"]) as meta:
        runs = meta.last_runs("npm")
        assert len(runs) == 2 and all(run["finish_reason"] == "finished" for run in runs)
        # the work was shared: each worker stored part of it
        assert all(run["items"] > 0 for run in runs), [run["items"] for run in runs]
        assert sum(run["items"] for run in runs) >= len(packages)
        assert meta.get_cursor("npm") == last_seq  # the full sync handed over to incremental
        assert not meta.get_cursor("npm", "full")


def test_named_packages_given_to_two_workers_are_fetched_once_and_a_third_helps(workspace, shared_env):
    with FakeNpmRegistry(packages=300, seed=4, latency=0.2).serve() as fake:
        env = {**shared_env, "NPM_REGISTRY_URL": fake.registry_url}
        names = [name for name in fake.package_names() if not name.startswith("fault-")][:250]
        (workspace.path / "names.txt").write_text("\n".join(names))
        # a helper started before there is any work waits for it
        helper = start_worker(workspace, env, "mode=worker")
        time.sleep(2)
        workers = [start_worker(workspace, env, "packages_file=names.txt") for _ in range(2)]
        assert wait_all(workspace, [helper, *workers]) == [0, 0, 0], logs(workspace)
        assert {name: fake.requests[name] for name in names} == dict.fromkeys(names, 1)
    assert sorted(stored_names(workspace, env)) == sorted(names)
    with MetaDB.connect(shared_env["META_DB_URL"]) as meta:
        helper_run = next(run for run in meta.last_runs("npm") if run["args"].get("mode") == "worker")
        assert helper_run["items"] > 0


def test_worker_mode_needs_redis(workspace):
    result = workspace.crawl("npm", "mode=worker", check=False)
    assert result.returncode != 0
    assert "mode=worker joins a distributed crawl: set REDIS_URL" in result.stderr


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_worker_killed_or_stopped_mid_run_loses_nothing(workspace, shared_env, stop):
    with FakeNpmRegistry(packages=600, seed=5, latency=0.03).serve() as fake:
        env = {**shared_env, "NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        # deletions at the end of the feed: a page of nothing but tombstones, which only the feed reader stores
        deleted = [name for name in fake.package_names() if not name.startswith("fault-")][:45]
        for name in deleted:
            fake.delete(name)
        positions = fake.feed_positions()
        fake.reset_counters()
        victim = start_worker(workspace, env, "mode=full")  # it reads the feed: the survivor takes over
        survivor = start_worker(workspace, env, "mode=worker")
        # kill it mid-run, while it holds leased requests
        server = redis.Redis.from_url(REDIS_TEST_URL)
        deadline = time.monotonic() + 60
        while victim.poll() is None and time.monotonic() < deadline:
            held = sum(
                server.hlen(key)
                for key in server.scan_iter(f"{shared_env['DISTRIBUTED_KEY_PREFIX']}:npm:leases:*-{victim.pid}-*")
            )
            if fake.total_requests >= 200 and held:
                break
            time.sleep(0.005)
        assert victim.poll() is None, "the crawl ended before the kill: make it longer"
        victim.send_signal(stop)
        # stopped: its finish reason is "shutdown", not "finished" (exit status 1)
        assert victim.wait(timeout=60) == (-signal.SIGKILL if stop == signal.SIGKILL else 1), logs(workspace)
        assert_cursor_not_ahead(workspace, env, positions)
        assert wait_all(workspace, [survivor]) == [0], logs(workspace)
    assert_cursor_not_ahead(workspace, env, positions)
    latest = {row["name"]: row["deleted"] for row in workspace.query("SELECT name, deleted FROM npm_package", **env)}
    assert set(latest) == set(positions)
    assert {name for name, gone in latest.items() if gone} == set(deleted)
    with MetaDB.connect(shared_env["META_DB_URL"]) as meta:
        assert meta.get_cursor("npm") == str(max(positions.values()))
        runs = {run["args"].get("mode"): run for run in meta.last_runs("npm")}
        if stop == signal.SIGKILL:
            # the killed worker's leased requests came back through the queue once its heartbeat expired
            assert runs["worker"]["stats"].get("distributed/requeued", 0) > 0
        else:
            # a stopped worker finishes and stores what it holds (Scrapy's graceful shutdown); what it could
            # not would go back to the queue as it leaves (tests/distributed/test_coordinator.py)
            assert runs["full"]["finish_reason"] == "shutdown"


def assert_cursor_not_ahead(workspace: Workspace, env: dict[str, str], positions: dict[str, int]) -> None:
    with MetaDB.connect(env["META_DB_URL"]) as meta:
        cursor = meta.get_cursor("npm") or meta.get_cursor("npm", "full")
    if not cursor:
        return
    covered = {name for name, seq in positions.items() if seq <= int(cursor)}
    stored = {row["name"] for row in workspace.query("SELECT DISTINCT name FROM npm_package_history", **env)}
    assert not covered - stored, f"cursor {cursor} is ahead of the stored data: {sorted(covered - stored)[:5]}"
