import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def test_replay_failed_then_status(workspace, fake_npm, npm_env):
    healthy = sorted(fake_npm.package_names())[0]
    # without retries, the fake's one-off 503 becomes a dead letter
    # a dead letter fails the monitors: exit status 4
    workspace.crawl(
        "npm", f"packages=fault-unavailable,{healthy}", settings={"RETRY_TIMES": 0}, exit_status=4, **npm_env
    )
    (failed,) = workspace.meta().failed("npm")
    assert failed["reason"] == "http_503"

    status = {row["source"]: row for row in json.loads(workspace.scrapy("status", "--format", "json").stdout)}
    assert status["npm"]["dead_letters"] == 1 and status["npm"]["finish_reason"] == "finished"
    assert status["npm"]["items"] == 1 and status["npm"]["error_rate"] == 0.5 and status["npm"]["errors"] == 0
    assert status["npm"]["bytes_stored"] > 0 and status["github"]["last_run"] is None
    assert status["npm"]["distributed"] is None  # no REDIS_URL
    assert status["npm"]["schedule"] == "0 2 * * * mode=incremental" and status["github"]["schedule"] is None

    replay = workspace.scrapy("replay-failed", "npm", **npm_env)
    assert "replaying 1 of 1" in replay.stdout and "1 dead letter(s) marked replayed" in replay.stdout
    names = {row["name"] for row in workspace.query("SELECT name FROM npm_package")}
    assert names == {healthy, "fault-unavailable"}
    assert workspace.meta().failed("npm") == []  # marked replayed
    assert workspace.meta().count_failed("npm", include_replayed=False) == 0
    assert json.loads(workspace.scrapy("status", "--format", "json").stdout)[1]["dead_letters"] == 0
    assert "none to replay" in workspace.scrapy("replay-failed", "npm", **npm_env).stdout
    table = workspace.scrapy("status").stdout
    assert "| npm " in table and "default=" not in table.split("| npm ")[0]


def dead_letter_of_a_first_crawl(workspace, fake_npm, npm_env) -> str:
    """One dead letter waiting (the fake's one-off 503 without retries); returns the healthy package."""
    healthy = sorted(fake_npm.package_names())[0]
    # a dead letter fails the monitors: exit status 4
    workspace.crawl(
        "npm", f"packages=fault-unavailable,{healthy}", settings={"RETRY_TIMES": 0}, exit_status=4, **npm_env
    )
    assert workspace.meta().count_failed("npm", include_replayed=False) == 1
    return healthy


def test_a_replay_that_cannot_store_its_records_leaves_the_dead_letters_waiting(workspace, fake_npm, npm_env):
    dead_letter_of_a_first_crawl(workspace, fake_npm, npm_env)
    # a store where every namespace the first crawl wrote is a file, not a folder: batches cannot be written
    blocked = workspace.path / "blocked"
    blocked.mkdir()
    for namespace in workspace.data.iterdir():
        if namespace.is_dir() and namespace.name != "_meta":
            (blocked / namespace.name).write_text("not a folder")
    meta_db_url = f"sqlite:///{workspace.data / '_meta' / 'meta.db'}"
    replay = workspace.scrapy(
        "replay-failed",
        "npm",
        check=False,
        STORAGE_URI=str(blocked),
        META_DB_URL=meta_db_url,
        STORE_RETRY_SECONDS="0",  # give the batch up at once: the store stays broken
        **npm_env,
    )
    assert "replaying 1 of 1" in replay.stdout
    assert replay.returncode == 1, replay.stderr[-3000:]
    assert "npm: the replay crawl could not store 1 batch(es) of records; its 1 dead letter(s) stay waiting" in (
        replay.stderr
    )
    assert fake_npm.requests["fault-unavailable"] == 2  # the replay did fetch it
    assert workspace.meta().count_failed("npm", include_replayed=False) == 1


def test_a_replay_stopped_by_sigterm_leaves_the_dead_letters_waiting(workspace, fake_npm, npm_env):
    dead_letter_of_a_first_crawl(workspace, fake_npm, npm_env)
    fake_npm.latency = 2.0  # the replay is still downloading when it is stopped
    replay = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "replay-failed", "npm"],
        cwd=workspace.path,
        env={**workspace.env, **npm_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while fake_npm.requests["fault-unavailable"] < 2 and replay.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_npm.requests["fault-unavailable"] == 2, "the replay never asked for the package"
        replay.send_signal(signal.SIGTERM)
        stdout, stderr = replay.communicate(timeout=60)
    finally:
        if replay.poll() is None:
            replay.kill()
            replay.communicate()
    assert "replaying 1 of 1" in stdout
    assert replay.returncode == 1, stderr[-3000:]
    assert "npm: the replay crawl ended with finish reason 'shutdown'; its 1 dead letter(s) stay waiting" in stderr
    assert workspace.meta().count_failed("npm", include_replayed=False) == 1


def test_replay_arguments_per_source():
    from crawler.spiders.github.spider import GithubSpider
    from crawler.spiders.npm.spider import NpmSpider
    from crawler.spiders.pypi.spider import PypiSpider

    rows = [
        {"id": 1, "url": "http://127.0.0.1:1/reg/@scope%2Fname"},
        {"id": 2, "url": "http://127.0.0.1:1/left-pad"},
        {"id": 3, "url": "http://127.0.0.1:1/_changes?since=1"},
        {"id": 4, "url": None},
    ]
    assert NpmSpider.replay_arguments(rows) == ({"packages": "@scope/name,left-pad"}, [1, 2])
    rows = [{"id": 5, "url": "http://127.0.0.1:1/pypi/Foo_Bar/json"}, {"id": 6, "url": "http://127.0.0.1:1/simple/"}]
    assert PypiSpider.replay_arguments(rows) == ({"packages": "Foo_Bar"}, [5])
    rows = [
        {"id": 7, "url": "http://127.0.0.1:1/users/octo"},
        {"id": 8, "url": "http://127.0.0.1:1/repos/o/r/commits"},
        {"id": 9, "url": "http://127.0.0.1:1/search/commits?q=x"},
    ]
    assert GithubSpider.replay_arguments(rows) == ({"users": "octo", "repos": "o/r"}, [7, 8])


def test_status_shows_a_distributed_crawl(workspace, redis_prefix):
    import redis

    from crawler.distributed.coordinator import Coordinator, Keys
    from tests.conftest import REDIS_TEST_URL

    worker = Coordinator(redis.Redis.from_url(REDIS_TEST_URL), Keys.for_spider(redis_prefix, "npm"), worker="w1")
    worker.join("run-1")
    for request in (b"a", b"b", b"c"):
        worker.server.zadd(worker.keys.queue, {request: 0})
    worker.pop()
    env = {"REDIS_URL": REDIS_TEST_URL, "DISTRIBUTED_KEY_PREFIX": redis_prefix}
    status = {row["source"]: row for row in json.loads(workspace.scrapy("status", "--format", "json", **env).stdout)}
    assert status["npm"]["distributed"] == {"workers": 1, "queued": 2, "leased": 1}
    assert status["pypi"]["distributed"] == {"workers": 0, "queued": 0, "leased": 0}
    assert "1 workers, 2 queued, 1 leased" in workspace.scrapy("status", **env).stdout
