"""The Iceberg tables of real crawls: read by PyIceberg alone (as another engine would) with the row
counts `scrapy query` reports; and a crawl killed with SIGKILL between writing a batch and committing it,
and between committing it and indexing it, leaves after the next run a table that holds exactly the
indexed files, each of them stored, and no cursor ahead of the data."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from pyiceberg.catalog import load_catalog

from tests import faults
from tests.fakes.npm import FakeNpmRegistry

#: small batches: a crawl of the fake feed stores several
SETTINGS = {"NPM_CHANGES_PAGE_SIZE": "10", "BATCH_MAX_RECORDS": "10", "BATCH_IDLE_SECONDS": "0.3"}

#: runs ``scrapy`` with a SIGKILL at a chosen point of the store path: ``commit`` kills before the Nth
#: Iceberg commit (the batch is written), ``index`` before the Nth index write (the batch is committed)
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from crawler.meta import MetaDB
    from crawler.storage.iceberg import IcebergTables

    point, after = os.environ["KILL_POINT"], int(os.environ["KILL_AFTER"])
    cls, name = (IcebergTables, "add") if point == "commit" else (MetaDB, "add_partitions")
    original, calls = getattr(cls, name), [0]

    def killing(*args, **kwargs):
        calls[0] += 1
        if calls[0] > after:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(cls, name, killing)
    from scrapy.cmdline import execute
    sys.argv = ["scrapy", *sys.argv[1:]]
    execute()
    """
)


def iceberg_table(workspace):
    """The npm table, through PyIceberg alone: the catalog is the metadata DB's SQLite file."""
    catalog = load_catalog("crawler", type="sql", uri=f"sqlite:///{workspace.data / '_meta' / 'meta.db'}")
    assert ("crawler", "npm_package") in catalog.list_tables("crawler")
    return catalog.load_table("crawler.npm_package")


#: the counts `scrapy query` reports, in one query (each `scrapy query` is a process of its own)
COUNTS = "SELECT (SELECT count(*) FROM npm_package_history) AS history, (SELECT count(*) FROM npm_package) AS latest"


@pytest.mark.slow
def test_a_crawled_table_is_read_by_pyiceberg_alone_with_the_counts_scrapy_query_reports(workspace, npm_env):
    workspace.crawl("npm", "mode=incremental", settings=SETTINGS, **npm_env)
    (counts,) = workspace.query(COUNTS)
    table = iceberg_table(workspace)
    rows = table.scan().to_arrow()
    assert rows.num_rows == counts["history"] > 10
    assert len(set(rows.column("name").to_pylist())) == counts["latest"]
    # the table's files are the platform's own Parquet files, as indexed
    assert table_files(workspace, table) == indexed(workspace) and len(indexed(workspace)) > 1
    # `scrapy query --iceberg` (QUERY_ICEBERG) reads the same through the table's snapshot
    assert workspace.query(COUNTS, QUERY_ICEBERG="true") == [counts]
    # `scrapy compact`: the table holds the compacted files the index holds, the latest record of each key
    workspace.scrapy("compact", "npm", "--no-progress")
    table = iceberg_table(workspace)
    assert table_files(workspace, table) == indexed(workspace)
    assert all("/compacted_" in key for key in indexed(workspace))
    assert table.scan().to_arrow().num_rows == counts["latest"]


def table_files(workspace, table) -> set[str]:
    return {p.removeprefix(f"file://{workspace.data}/") for p in table.inspect.files()["file_path"].to_pylist()}


def indexed(workspace) -> set[str]:
    return {row.object_key for row in workspace.meta().partitions("npm") if row.format == "parquet"}


def killed_crawl(workspace, env: dict[str, str], point: str, after: int) -> int:
    (workspace.path / "killer.py").write_text(KILLER)
    args = [sys.executable, "killer.py", "crawl", "npm", "-a", "mode=incremental"]
    for name, value in {**SETTINGS, "RECONCILE_GRACE_SECONDS": "0"}.items():
        args += ["-s", f"{name}={value}"]
    process = subprocess.run(
        args,
        cwd=workspace.path,
        env={**workspace.env, **env, "KILL_POINT": point, "KILL_AFTER": str(after)},
        capture_output=True,
        timeout=120,
    )
    return process.returncode


def assert_table_follows_index(workspace) -> None:
    table = iceberg_table(workspace)
    paths = table.inspect.files()["file_path"].to_pylist()
    assert len(paths) == len(set(paths)), "a file registered twice"
    files = table_files(workspace, table)
    assert files == indexed(workspace)
    assert all((workspace.data / key).exists() for key in files), "a committed file without its data"
    (counts,) = workspace.query(COUNTS)
    assert table.scan().to_arrow().num_rows == counts["history"]


@pytest.mark.slow
@pytest.mark.faults
def test_sigkill_between_write_commit_and_index_leaves_nothing_uncommitted(workspace):
    with FakeNpmRegistry(packages=80, seed=3, latency=0.002).serve() as fake:
        env = {"NPM_REGISTRY_URL": fake.registry_url, "NPM_CHANGES_URL": fake.changes_url}
        positions = fake.feed_positions()
        kills = 0
        for point in ("commit", "index"):
            status = killed_crawl(workspace, env, point, after=2)
            assert status == -signal.SIGKILL, f"the crawl was not killed before its {point}"
            kills += 1
        time.sleep(0.01)
        # the next run puts right what the kills left (RECONCILE_GRACE_SECONDS=0: no writer is at work)
        workspace.crawl("npm", "mode=incremental", settings={**SETTINGS, "RECONCILE_GRACE_SECONDS": "0"}, **env)
    assert_table_follows_index(workspace)
    stored = {row["name"] for row in workspace.query("SELECT name FROM npm_package")}
    assert stored == set(positions)
    assert int(workspace.meta().get_cursor("npm")) == max(positions.values())
    faults.record("npm", "SIGKILL between a batch's write, Iceberg commit and index", kills)
