"""Kill -9 sweeps over every source that keeps a cursor (the fault suite, DESIGN §3.1).

Each sweep runs one source's sync again and again in the same workspace, each run killed at a different point
of its work (``tests/killpoints.py``: a response arriving, a body mid-download, a batch about to be written,
half written, written but not indexed, indexed with its cursor not yet saved, a cursor's transaction not yet
committed, a cursor just saved), then once uninterrupted. After every kill, a cursor is never ahead of what is
stored; at the end, everything the source serves is stored, no key was stored more often than there were runs
(duplicates only in the window a kill reopens), and no temporary, unindexed or missing file is left.

CI runs four points per source; ``FAULTS_SCALE=full`` runs every point, both modes where a source has two.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from crawler.meta import MetaDB
from crawler.spiders.pypi.records import normalize_name
from crawler.storage import open_store
from crawler.storage.layout import parse_key
from tests import faults
from tests.fakes.czds import FakeCzds, write_zone, zone_day
from tests.fakes.github import FakeGitHub
from tests.fakes.npm import FakeNpmRegistry
from tests.fakes.pypi import FakePyPI

pytestmark = [pytest.mark.slow, pytest.mark.faults]

#: kill points of a crawl with the arrival that triggers each: early enough that every run stops half way
CRAWL_POINTS = {
    "response": 12,
    "chunk": 30,
    "write": 2,
    "put": 3,
    "index": 2,
    "indexed": 2,
    "cursor": 2,
    "cursor-saved": 1,
}
#: the runs are sequential: a temporary file of the killed run before is an orphan at once (by default one
#: younger than RECONCILE_GRACE_SECONDS may be another worker's, still being written)
QUICK = {"RECONCILE_GRACE_SECONDS": 0}
#: the points CI runs, per source (together they cover every point)
CI_POINTS = {
    "npm": ("response", "put", "indexed", "cursor"),
    "pypi": ("write", "index", "cursor-saved", "response"),
    "github": ("chunk", "indexed", "cursor", "write"),
    "czds": ("put", "index", "cursor-saved", "write"),
}
#: at full scale every point, except where a source's work has too few arrivals at one to stop it half way:
#: CZDS makes a dozen requests whose bodies stream to files (its own kill -9 mid-download is in test_czds)
FULL_POINTS = {"czds": ("put", "index", "write", "indexed", "cursor", "cursor-saved")}


@dataclass
class Sync:
    """One source's sync against its fake: how to run it, what it must end with, and its cursor rule."""

    source: str
    arguments: list[str]
    settings: dict[str, Any]
    env: dict[str, str]
    #: every key the fake serves, as the source stores it
    expected: set[Any]
    #: the SQL listing the stored keys (one column, ``key``), and each key's stored copies (``key``, ``n``)
    stored_sql: str
    copies_sql: str
    #: raises if a cursor is ahead of the stored data (the workspace, the metadata DB)
    check_cursor: Callable[[Any, MetaDB], None] = lambda workspace, meta: None
    #: runs before the sweep (an incremental sync's first full run), counted as one run; None: nothing
    prepare: Callable[[Any, Sync], None] | None = None


def run(workspace: Any, sync: Sync, kill_at: str | None) -> int:
    args = [sys.executable, "-m", "tests.killpoints", "crawl", sync.source]
    for argument in sync.arguments:
        args += ["-a", argument]
    for name, value in {"RETRY_BACKOFF_BASE": 0.05, "BATCH_IDLE_SECONDS": 0.3, **QUICK, **sync.settings}.items():
        args += ["-s", f"{name}={value}"]
    env = {**workspace.env, **sync.env, **({"KILL_AT": kill_at} if kill_at else {})}
    result = subprocess.run(args, cwd=workspace.path, env=env, capture_output=True, text=True, timeout=180)
    if result.returncode not in (0, -9):
        raise AssertionError(f"{sync.source} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.returncode


def stored_keys(workspace: Any, sync: Sync) -> set[Any]:
    return {row["key"] for row in workspace.query(sync.stored_sql, **sync.env)}


def assert_no_orphans(data: Path, meta: MetaDB) -> None:
    """No temporary file is left, every data file is indexed, every indexed file exists."""
    temporaries = [p for p in data.rglob("*") if p.name.startswith((".tmp-", ".download-"))]
    assert not temporaries, f"temporary files left: {temporaries[:3]}"
    store = open_store(str(data))
    on_disk = {obj.key for obj in store.list("") if parse_key(obj.key) is not None}
    namespaces = {parse_key(key).namespace for key in on_disk}  # type: ignore[union-attr]
    indexed = {row.object_key for namespace in namespaces for row in meta.partitions(namespace)}
    assert on_disk - indexed == set(), f"data files not indexed: {sorted(on_disk - indexed)[:3]}"
    assert indexed - on_disk == set(), f"indexed files missing: {sorted(indexed - on_disk)[:3]}"


def sweep(workspace: Any, sync: Sync, points: tuple[str, ...]) -> None:
    meta = MetaDB.connect(f"sqlite:///{workspace.data / '_meta' / 'meta.db'}")
    kills = runs = 0
    if sync.prepare is not None:
        sync.prepare(workspace, sync)
        runs += 1
    for point in points:
        runs += 1
        if run(workspace, sync, f"{point}:{CRAWL_POINTS[point]}") == -9:
            kills += 1
        sync.check_cursor(workspace, meta)
    assert kills >= len(points) - 1, f"only {kills} of {len(points)} runs reached their kill point"
    runs += 1
    assert run(workspace, sync, None) == 0
    sync.check_cursor(workspace, meta)
    assert stored_keys(workspace, sync) == sync.expected
    most = max(row["n"] for row in workspace.query(sync.copies_sql, **sync.env))
    assert most <= runs, f"a key stored {most} times in {runs} runs"
    assert_no_orphans(workspace.data, meta)
    faults.record(sync.source, f"SIGKILL sweep: {', '.join(points)}", kills)


def points_for(source: str) -> tuple[str, ...]:
    return FULL_POINTS.get(source, tuple(CRAWL_POINTS)) if faults.full_scale() else CI_POINTS[source]


# -- one sync per source ----------------------------------------------------------------------------------


@contextmanager
def npm_sync(mode: str) -> Iterator[Sync]:
    with FakeNpmRegistry(packages=400, seed=17, latency=0.002).serve() as fake:
        positions = fake.feed_positions()

        def check_cursor(workspace: Any, meta: MetaDB) -> None:
            cursor = meta.get_cursor("npm")
            if cursor is None:
                return
            covered = {name for name, seq in positions.items() if seq <= int(cursor)}
            assert covered <= stored_keys(workspace, sync), f"the npm cursor {cursor} is ahead of stored data"

        sync = Sync(
            "npm",
            [f"mode={mode}"],
            {"NPM_CHANGES_PAGE_SIZE": 20, "BATCH_MAX_RECORDS": 15},
            {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url},
            set(positions),
            "SELECT name AS key FROM npm_package",
            "SELECT name AS key, count(*) AS n FROM npm_package_history GROUP BY name",
            check_cursor,
        )
        yield sync


@contextmanager
def pypi_sync(mode: str) -> Iterator[Sync]:
    with FakePyPI(projects=120, seed=19).serve() as fake:
        names = fake.project_names()

        def publish_changes(workspace: Any, sync: Sync) -> None:
            # a whole sync, then half the projects change: the incremental runs follow the serials
            assert run(workspace, dataclasses.replace(sync, arguments=["mode=full"]), None) == 0
            for name in names[::2]:
                fake.publish(name)
            sync.expected = {f"{normalize_name(name)}:{fake.serial_of(name)}" for name in names}

        yield Sync(
            "pypi",
            [f"mode={mode}"],
            {"PYPI_PAGE_SIZE": 10, "BATCH_MAX_RECORDS": 8},
            {"PYPI_URL": fake.url},
            {f"{normalize_name(name)}:{fake.serial_of(name)}" for name in names},
            "SELECT name || ':' || last_serial AS key FROM pypi_package",
            "SELECT name AS key, count(*) AS n FROM pypi_package_history GROUP BY name",
            prepare=publish_changes if mode == "incremental" else None,
        )


@contextmanager
def github_sync() -> Iterator[Sync]:
    with FakeGitHub(users=2, repos_per_user=2, commits_per_repo=120, seed=23).serve() as fake:
        repos = [repo for user in fake.logins()[:2] for repo in fake.repo_names(user) if repo not in fake.empty_repos]
        shas = {(repo, commit["sha"]) for repo in repos for commit in fake.commits(repo)}

        def check_cursor(workspace: Any, meta: MetaDB) -> None:
            # a commits:<repo> cursor (the newest commit date) covers every commit of the repo up to it
            stored = stored_keys(workspace, sync)
            for row in meta.cursors("github"):
                if not row["cursor_key"].startswith("commits:"):
                    continue
                repo = row["cursor_key"].removeprefix("commits:")
                covered = {
                    f"{repo} {c['sha']}"
                    for c in fake.commits(repo)
                    if c["commit"]["committer"]["date"].removesuffix("Z") <= row["cursor_value"][:19]
                }
                assert covered <= stored, f"the cursor of {repo} is ahead of its stored commits"

        sync = Sync(
            "github",
            ["repos=" + ",".join(repos)],
            {"BATCH_MAX_RECORDS": 40, "GITHUB_COMMIT_STATS": "true"},
            {"GITHUB_API_URL": fake.url, "GITHUB_TOKENS": "t1"},
            {f"{repo} {sha}" for repo, sha in shas},
            "SELECT repo || ' ' || sha AS key FROM github_commit",
            "SELECT repo || ' ' || sha AS key, count(*) AS n FROM github_commit_history GROUP BY 1",
            check_cursor,
        )
        yield sync


@contextmanager
def czds_sync(folder: Path) -> Iterator[Sync]:
    folder.mkdir()
    fake = FakeCzds()
    names = {"alpha": 6000, "beta": 4000, "gamma": 3000, "delta": 2000}
    if faults.full_scale():
        names |= {"epsilon": 5000, "zeta": 4000, "eta": 3000, "theta": 2000}
    for tld, count in names.items():
        fake.add_zone(tld, write_zone(folder / f"{tld}.gz", tld, count), zone_day(0))
    with fake.serve():

        def check_cursor(workspace: Any, meta: MetaDB) -> None:
            saved = {row["cursor_key"] for row in meta.cursors("czds") if row["cursor_key"] in names}
            if saved:
                rows = workspace.query("SELECT tld, count(DISTINCT fqdn) AS n FROM domains GROUP BY tld", **sync.env)
                stored = {row["tld"]: row["n"] for row in rows}
                for tld in saved:
                    assert stored.get(tld) == names[tld], f"the cursor of {tld} is ahead of its stored domains"

        sync = Sync(
            "czds",
            [],
            {"COLUMNAR_BATCH_MAX_RECORDS": 2500},
            {
                "CZDS_AUTH_URL": fake.auth_url,
                "CZDS_API_URL": fake.api_url,
                "CZDS_USERNAME": fake.username,
                "CZDS_PASSWORD": fake.password,
                "CZDS_DOWNLOAD_DIR": str(folder / "downloads"),
            },
            {f"{tld}:{count}" for tld, count in names.items()},
            "SELECT tld || ':' || count(DISTINCT fqdn) AS key FROM domains GROUP BY tld",
            "SELECT fqdn AS key, count(*) AS n FROM domains_history GROUP BY fqdn",
            check_cursor,
        )
        yield sync


# -- the sweeps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["incremental", "full"] if faults.full_scale() else ["incremental"])
def test_npm(workspace, mode):
    with npm_sync(mode) as sync:
        sweep(workspace, sync, points_for("npm"))


@pytest.mark.parametrize("mode", ["full", "incremental"] if faults.full_scale() else ["full"])
def test_pypi(workspace, mode):
    with pypi_sync(mode) as sync:
        sweep(workspace, sync, points_for("pypi"))


def test_github(workspace):
    with github_sync() as sync:
        sweep(workspace, sync, points_for("github"))


def test_czds(workspace, tmp_path):
    with czds_sync(tmp_path / "zones") as sync:
        sweep(workspace, sync, points_for("czds"))


#: kill points of a compaction: indexed, the old files not yet deleted; its files written, not indexed
COMPACTION_POINTS = ("delete", "swap")


def compact(workspace: Any, kill_at: str | None) -> int:
    args = [sys.executable, "-m", "tests.killpoints", "compact", "npm", "--no-progress"]
    args += ["-s", "RECONCILE_GRACE_SECONDS=0"]
    env = {**workspace.env, **({"KILL_AT": kill_at} if kill_at else {})}
    result = subprocess.run(args, cwd=workspace.path, env=env, capture_output=True, text=True, timeout=120)
    if result.returncode not in (0, -9):
        raise AssertionError(f"compact exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result.returncode


def test_compaction(workspace):
    """A compaction killed at any point leaves the views reading each record once, and the next one ends
    the job: the latest records unchanged, the history compacted, no file orphaned."""
    with npm_sync("full") as sync:
        for _ in range(2):  # two syncs: every package twice, in many batches
            assert run(workspace, sync, None) == 0
        latest_sql = "SELECT name, _ingested_at FROM npm_package ORDER BY name"
        latest = workspace.query(latest_sql)
        assert len(latest) == len(sync.expected)
        meta = MetaDB.connect(f"sqlite:///{workspace.data / '_meta' / 'meta.db'}")
        kills = 0
        copies = 2
        history_sql = "SELECT count(*) AS n, count(DISTINCT name) AS names FROM npm_package_history"
        for point in COMPACTION_POINTS:
            # another sync between compactions: the day has uncompacted batches again
            assert run(workspace, sync, None) == 0
            copies += 1
            latest = workspace.query(latest_sql)
            if compact(workspace, f"{point}:1") == -9:
                kills += 1
            if point == "delete":  # the index holds the compacted files alone
                copies = 1
            assert workspace.query(latest_sql) == latest
            (history,) = workspace.query(history_sql)
            assert history == {"n": len(sync.expected) * copies, "names": len(sync.expected)}, point
        assert kills == len(COMPACTION_POINTS)
        # the next crawl puts right what the last kill left (the replaced batches are removed, not indexed again)
        assert run(workspace, sync, None) == 0
        (history,) = workspace.query(history_sql)
        assert history == {"n": len(sync.expected) * (copies + 1), "names": len(sync.expected)}
        latest = workspace.query(latest_sql)
        assert compact(workspace, None) == 0
        assert workspace.query(latest_sql) == latest
        (history,) = workspace.query(history_sql)
        assert history == {"n": len(sync.expected), "names": len(sync.expected)}
        assert_no_orphans(workspace.data, meta)
    faults.record("npm", f"SIGKILL during a compaction: {', '.join(COMPACTION_POINTS)}", kills)
