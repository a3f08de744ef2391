"""Tests for crawler.meta (metadata DB) on SQLite and, when reachable, PostgreSQL.

PostgreSQL tests use ``$META_TEST_PG_URL`` or ``postgresql://{root,postgres}@127.0.0.1:5432/test``,
each test in its own throw-away schema; they are skipped when no server answers.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import crawler.meta.db as dbmod
from crawler.meta import MetaDB, PartitionRow, schema_sql
from crawler.meta.db import payload_sample

REPO = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO / "crawler" / "meta" / "schema-minimal.sql"
TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

EXPECTED_COLUMNS = {
    "ingestion_runs": [
        "run_id",
        "source",
        "spider",
        "args",
        "started_at",
        "finished_at",
        "finish_reason",
        "items",
        "errors",
        "dead_letters",
        "bytes_written",
        "stats",
        "host",
    ],
    "sync_state": ["source", "cursor_key", "cursor_value", "updated_at", "run_id"],
    "failed_messages": [
        "id",
        "source",
        "run_id",
        "reason",
        "url",
        "payload_sample",
        "attempts",
        "created_at",
        "replayed_at",
    ],
    "r2_partitions": list(PartitionRow.COLUMNS),
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/meta.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def db(db_url: str) -> Iterator[MetaDB]:
    meta = MetaDB.connect(db_url)
    try:
        yield meta
    finally:
        meta.close()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Deterministic, strictly increasing timestamps from ``utcnow``; returns the issued ones."""
    issued: list[str] = []
    counter = iter(range(10**6))

    def fake() -> str:
        n = next(counter)
        ts = f"2024-01-01T00:{n // 60 % 60:02d}:{n % 60:02d}.000Z"
        issued.append(ts)
        return ts

    monkeypatch.setattr(dbmod, "utcnow", fake)
    return issued


def _run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


# --------------------------------------------------------------------------- schema


def test_schema_file_is_portable_text() -> None:
    sql = SCHEMA_PATH.read_text("utf-8")
    assert sql == schema_sql()
    upper = sql.upper()
    assert "PRAGMA" not in upper
    assert "AUTOINCREMENT" not in upper
    creates = re.findall(r"CREATE\s+(TABLE|INDEX)\s+(IF\s+NOT\s+EXISTS\s+)?", upper)
    assert len(creates) >= 4 + 1
    assert all(if_not_exists for _, if_not_exists in creates), "every CREATE must be IF NOT EXISTS"
    # D1 splits files on semicolons naively: keep quotes and semicolons out of comments.
    for line in sql.splitlines():
        if "--" in line:
            comment = line[line.index("--") :]
            assert not set(comment) & set("';`"), line


def test_schema_symlink() -> None:
    link = REPO / "db" / "schema-minimal.sql"
    assert link.is_symlink()
    assert os.readlink(link) == "../crawler/meta/schema-minimal.sql"
    assert link.resolve() == SCHEMA_PATH.resolve()


def test_schema_runs_with_plain_executescript_twice() -> None:
    """Simulates D1: the file as-is, no Python-side settings, applied twice."""
    conn = sqlite3.connect(":memory:")
    sql = SCHEMA_PATH.read_text("utf-8")
    conn.executescript(sql)
    conn.executescript(sql)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(EXPECTED_COLUMNS)
    for table, columns in EXPECTED_COLUMNS.items():
        assert [r[1] for r in conn.execute(f"PRAGMA table_info({table})")] == columns
    pk = {r[1]: r[5] for r in conn.execute("PRAGMA table_info(sync_state)") if r[5]}
    assert pk == {"source": 1, "cursor_key": 2}
    index_cols = {
        name: [r[2] for r in conn.execute(f"PRAGMA index_info({name})")]
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    }
    assert ["namespace", "year", "month", "day"] in index_cols.values()
    # failed_messages.id is the rowid alias: assigned without AUTOINCREMENT.
    conn.execute("INSERT INTO failed_messages (source, reason, attempts, created_at) VALUES ('s', 'r', 1, 'now')")
    assert conn.execute("SELECT id FROM failed_messages").fetchone() == (1,)


def test_schema_runs_unchanged_on_postgres(pg_url: str) -> None:
    """The file as-is on PostgreSQL (twice), then MetaDB adopts it and continues the ids."""
    import psycopg

    sql = SCHEMA_PATH.read_text("utf-8")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(sql)
        conn.execute(sql)
        # rows migrated from SQLite/D1 carry explicit ids
        conn.execute(
            "INSERT INTO failed_messages (id, source, reason, attempts, created_at) "
            "VALUES (41, 's', 'r', 1, '2024-01-01T00:00:00.000Z')"
        )
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'r2_partitions' AND table_schema = current_schema() ORDER BY ordinal_position"
        ).fetchall()
        assert [c[0] for c in cols] == EXPECTED_COLUMNS["r2_partitions"]
    with MetaDB.connect(pg_url) as meta:
        assert meta.backend == "postgresql"
        assert meta.add_failed("s", "next") == 42
    with MetaDB.connect(pg_url) as meta:  # second schema application keeps the sequence
        assert meta.add_failed("s", "again") == 43
        assert meta.count_failed("s") == 3


def test_connect_twice_is_idempotent(db_url: str) -> None:
    with MetaDB.connect(db_url) as first:
        first.save_cursor("npm", "100")
        first.start_run("r1", "npm", "npm", {}, "host")
        first_id = first.add_failed("npm", "boom")
        # a second connection while the first is open (crawl + `scrapy status`)
        with MetaDB.connect(db_url) as second:
            assert second.get_cursor("npm") == "100"
    with MetaDB.connect(db_url) as again:
        assert again.get_cursor("npm") == "100"
        assert again.get_run("r1") is not None
        assert again.add_failed("npm", "boom2") > first_id
        assert again.count_failed("npm") == 2


def test_sqlite_connection_settings_and_urls(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "meta.db"
    with MetaDB.connect(f"sqlite://{path}") as meta:
        assert meta.backend == "sqlite"
        assert meta._b.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert meta._b.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        meta.save_cursor("s", "v")
    assert path.exists()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()
    # a plain path (str or PathLike) opens the same file
    with MetaDB.connect(str(path)) as meta:
        assert meta.get_cursor("s") == "v"
    with MetaDB.connect(path) as meta:
        assert meta.get_cursor("s") == "v"
    # in-memory DBs are private to their connection
    with MetaDB.connect("sqlite:///:memory:") as m1, MetaDB.connect("sqlite:///:memory:") as m2:
        m1.save_cursor("s", "1")
        assert m2.get_cursor("s") is None
    with pytest.raises(ValueError, match="unsupported"):
        MetaDB.connect("mysql://u:secret@h/db")
    with pytest.raises(ValueError) as excinfo:
        MetaDB.connect("mysql://u:secret@h/db")
    assert "secret" not in str(excinfo.value)


def test_close_is_idempotent(db_url: str) -> None:
    meta = MetaDB.connect(db_url)
    meta.close()
    meta.close()


# --------------------------------------------------------------------------- runs


def test_runs_start_finish_roundtrip(db: MetaDB) -> None:
    assert db.get_run("nope") is None
    db.start_run("run-1", "npm", "npm_changes", {"since": "5", "limit": 10}, "worker-1")
    run = db.get_run("run-1")
    assert run is not None
    assert run["source"] == "npm"
    assert run["spider"] == "npm_changes"
    assert run["args"] == {"since": "5", "limit": 10}
    assert run["host"] == "worker-1"
    assert TS_RE.match(run["started_at"])
    assert run["finished_at"] is None and run["finish_reason"] is None and run["items"] is None

    import datetime as dt

    stats = {"item_scraped_count": 7, "start_time": dt.datetime(2024, 5, 1, tzinfo=dt.UTC)}
    db.finish_run("run-1", "finished", items=7, errors=1, dead_letters=2, bytes_written=5 * 2**32, stats=stats)
    run = db.get_run("run-1")
    assert run is not None
    assert run["finish_reason"] == "finished"
    assert (run["items"], run["errors"], run["dead_letters"]) == (7, 1, 2)
    assert run["bytes_written"] == 5 * 2**32  # needs 64-bit columns
    assert run["stats"] == {"item_scraped_count": 7, "start_time": "2024-05-01T00:00:00+00:00"}
    assert TS_RE.match(run["finished_at"])
    assert run["finished_at"] >= run["started_at"]

    with pytest.raises(KeyError):
        db.finish_run("never-started", "finished", 0, 0, 0, 0, {})


def test_restart_keeps_started_at_and_clears_finish(db: MetaDB, clock: list[str]) -> None:
    db.start_run("r", "npm", "npm", {"a": 1}, "h1")
    db.finish_run("r", "shutdown", 1, 0, 0, 1, {})
    db.start_run("r", "npm", "npm", {"a": 2}, "h2")
    run = db.get_run("r")
    assert run is not None
    assert run["started_at"] == clock[0]
    assert run["args"] == {"a": 2} and run["host"] == "h2"
    assert run["finished_at"] is None and run["finish_reason"] is None


def test_last_runs_order_filter_limit(db: MetaDB, clock: list[str]) -> None:
    for i in range(5):
        db.start_run(f"npm-{i}", "npm", "npm", {}, "h")
        db.start_run(f"pypi-{i}", "pypi", "pypi", {}, "h")
    assert [r["run_id"] for r in db.last_runs("npm")] == [f"npm-{i}" for i in reversed(range(5))]
    assert [r["run_id"] for r in db.last_runs(limit=3)] == ["pypi-4", "npm-4", "pypi-3"]
    assert len(db.last_runs()) == 10
    assert db.last_runs("nothing") == []
    assert all(isinstance(r["args"], dict) for r in db.last_runs())


# --------------------------------------------------------------------------- cursors


def test_cursor_save_overwrite_get(db: MetaDB) -> None:
    assert db.get_cursor("npm") is None
    db.save_cursor("npm", "1000", run_id="r1")
    assert db.get_cursor("npm") == "1000"
    db.save_cursor("npm", "2000", run_id="r2")
    assert db.get_cursor("npm") == "2000"
    (row,) = db.cursors("npm")
    assert row["run_id"] == "r2" and row["cursor_key"] == "default" and TS_RE.match(row["updated_at"])
    huge = str(2**80)  # opaque: larger than any integer column
    db.save_cursor("npm", huge)
    assert db.get_cursor("npm") == huge
    with pytest.raises(TypeError):
        db.save_cursor("npm", 5)  # type: ignore[arg-type]
    assert db.get_cursor("npm") == huge


def test_cursor_keys_and_sources_isolated(db: MetaDB) -> None:
    db.save_cursor("npm", "seq-1")
    db.save_cursor("npm", "serial-9", key="serial")
    db.save_cursor("pypi", "seq-2")
    assert db.get_cursor("npm") == "seq-1"
    assert db.get_cursor("npm", "serial") == "serial-9"
    assert db.get_cursor("pypi") == "seq-2"
    assert db.get_cursor("pypi", "serial") is None
    db.save_cursor("npm", "serial-10", key="serial")
    assert db.get_cursor("npm") == "seq-1"
    assert [(r["source"], r["cursor_key"]) for r in db.cursors()] == [
        ("npm", "default"),
        ("npm", "serial"),
        ("pypi", "default"),
    ]
    assert db.delete_cursor("npm", "serial") is True
    assert db.delete_cursor("npm", "serial") is False
    assert db.get_cursor("npm", "serial") is None
    assert db.get_cursor("npm") == "seq-1"


DURABILITY_SCRIPT = """
import os, signal, sys
from crawler.meta import MetaDB
db = MetaDB.connect(sys.argv[1])
db.save_cursor("npm", "40000001", run_id="r-kill")
db.save_cursor("npm", "77", key="serial")
sys.stdout.write("saved\\n")
sys.stdout.flush()
if sys.argv[2] == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(0)
"""


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_cursor_survives_process_death(db_url: str, how: str) -> None:
    with MetaDB.connect(db_url) as meta:
        meta.save_cursor("npm", "1")  # older value that must be overwritten
    proc = _run_python(DURABILITY_SCRIPT, db_url, how)
    assert proc.stdout == "saved\n", proc.stderr
    assert proc.returncode == (-signal.SIGKILL if how == "sigkill" else 0), proc.stderr
    if db_url.startswith("sqlite://"):
        # no clean close happened: the commit lives in the WAL and must be recovered from it
        assert Path(db_url[len("sqlite://") :] + "-wal").exists()
    with MetaDB.connect(db_url) as meta:
        assert meta.get_cursor("npm") == "40000001"
        assert meta.get_cursor("npm", "serial") == "77"
        assert meta.cursors("npm")[0]["run_id"] == "r-kill"


# --------------------------------------------------------------------------- dead letters


def test_payload_sample_bounds() -> None:
    assert payload_sample(None, 100) is None
    assert payload_sample("short", 100) == "short"
    assert payload_sample(b"ok\xff\xfe", 100) == "ok\ufffd\ufffd"
    assert payload_sample("x" * 100, 100) == "x" * 100  # exactly at the bound: untouched
    s = payload_sample("x" * 101, 100)
    assert s is not None and len(s) == 100 and s.endswith("…[truncated, 101 bytes total]")
    # multi-byte: N counts UTF-8 bytes of the original
    s = payload_sample("é" * 500, 100)
    assert s is not None and len(s) == 100 and s.startswith("é") and s.endswith("[truncated, 1000 bytes total]")
    # a big bytes body whose prefix cut lands inside a 3-byte char: no spurious replacement chars
    s = payload_sample("€".encode() * 100_000, 100)
    assert s is not None and len(s) == 100 and "\ufffd" not in s
    assert s.endswith("…[truncated, 300000 bytes total]") and set(s[: s.index("…")]) == {"€"}
    # NUL and lone surrogates are made storable
    assert payload_sample("a\x00b\udcff", 100) == "a\ufffdb?"


def test_failed_truncation_and_listing(db: MetaDB) -> None:
    body = b'{"name": "left-pad", "x": "' + b"y" * 20_000 + b'"}'
    fid = db.add_failed("npm", "json error", url="https://registry/left-pad", payload=body, run_id="r1")
    assert isinstance(fid, int)
    (row,) = db.failed("npm")
    assert row["id"] == fid
    assert row["reason"] == "json error" and row["url"] == "https://registry/left-pad"
    assert row["run_id"] == "r1" and row["attempts"] == 1 and row["replayed_at"] is None
    assert TS_RE.match(row["created_at"])
    sample = row["payload_sample"]
    assert len(sample) == 4096
    assert sample.startswith('{"name": "left-pad"')
    assert sample.endswith(f"…[truncated, {len(body)} bytes total]")

    small = db.add_failed("npm", "http 500", payload="tiny", attempts=3)
    rows = db.failed("npm")
    assert [r["id"] for r in rows] == [fid, small]
    assert rows[1]["payload_sample"] == "tiny" and rows[1]["attempts"] == 3
    assert db.add_failed("npm", "no payload") > small
    assert db.failed("npm")[-1]["payload_sample"] is None
    assert db.failed("npm", limit=2) == rows


def test_failed_custom_limit(db_url: str) -> None:
    with MetaDB.connect(db_url, payload_limit=100) as meta:
        meta.add_failed("s", "r", payload="z" * 1000)
        (row,) = meta.failed()
        assert len(row["payload_sample"]) == 100
        assert row["payload_sample"].endswith("…[truncated, 1000 bytes total]")
    with pytest.raises(ValueError):
        MetaDB.connect("sqlite:///:memory:", payload_limit=10)


def test_failed_counts_and_replay(db: MetaDB) -> None:
    ids = []
    for source, run_id, n in (("npm", "r1", 3), ("npm", "r2", 2), ("pypi", "r3", 4), ("pypi", None, 1)):
        ids += [db.add_failed(source, "e", run_id=run_id) for _ in range(n)]
    assert len(set(ids)) == 10
    assert db.count_failed() == 10
    assert db.count_failed("npm") == 5
    assert db.count_failed("pypi") == 5
    assert db.count_failed(run_id="r1") == 3
    assert db.count_failed("npm", run_id="r2") == 2
    assert db.count_failed("npm", run_id="r3") == 0
    assert db.count_failed("crates") == 0

    npm_ids = [r["id"] for r in db.failed("npm")]
    assert db.mark_replayed(npm_ids[:4]) == 4
    assert [r["id"] for r in db.failed("npm")] == npm_ids[4:]
    assert [r["id"] for r in db.failed("npm", include_replayed=True)] == npm_ids
    replayed = [r for r in db.failed("npm", include_replayed=True) if r["replayed_at"]]
    assert len(replayed) == 4 and all(TS_RE.match(r["replayed_at"]) for r in replayed)
    assert db.count_failed("npm") == 5
    assert db.count_failed("npm", include_replayed=False) == 1
    assert len(db.failed()) == 6


# --------------------------------------------------------------------------- partitions


def _part(key: str, ns: str = "npm/packages", y: int = 2024, m: int = 5, d: int = 1, **kw: object) -> PartitionRow:
    values: dict[str, object] = {"format": "ndjson", "records": 10, "bytes": 1000} | kw
    return PartitionRow(key, ns, y, m, d, **values)  # type: ignore[arg-type]


def test_partition_row_validation() -> None:
    with pytest.raises(ValueError):
        _part("k", format="csv")
    with pytest.raises(ValueError):
        _part("k", m=13)
    with pytest.raises(ValueError):
        _part("")
    row = _part("k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.records = 5  # type: ignore[misc]


def test_partitions_upsert_list_filter_delete(db: MetaDB) -> None:
    rows = [
        _part("npm/2024/05/01/a.ndjson", d=1, min_ingested_at="2024-05-01T00:00:00Z", run_id="r1"),
        _part("npm/2024/05/01/a.parquet", d=1, format="parquet", schema_version=2),
        _part("npm/2024/05/02/a.ndjson", d=2, created_at="2024-05-02T01:00:00.000Z"),
        _part("npm/2024/06/01/a.ndjson", m=6, d=1),
        _part("npm/2023/12/31/a.ndjson", y=2023, m=12, d=31, bytes=3 * 2**31),
        _part("pypi/2024/05/01/a.ndjson", ns="pypi/releases"),
    ]
    db.add_partitions(rows)
    db.add_partitions([])

    listed = db.partitions("npm/packages")
    assert [p.object_key for p in listed] == [
        "npm/2023/12/31/a.ndjson",
        "npm/2024/05/01/a.ndjson",
        "npm/2024/05/01/a.parquet",
        "npm/2024/05/02/a.ndjson",
        "npm/2024/06/01/a.ndjson",
    ]
    assert all(isinstance(p, PartitionRow) and p.created_at and TS_RE.match(p.created_at) for p in listed[:2])
    by_key = {p.object_key: p for p in listed}
    assert by_key["npm/2024/05/02/a.ndjson"].created_at == "2024-05-02T01:00:00.000Z"
    assert by_key["npm/2023/12/31/a.ndjson"].bytes == 3 * 2**31
    first = by_key["npm/2024/05/01/a.ndjson"]
    assert first == dataclasses.replace(rows[0], created_at=first.created_at)
    assert by_key["npm/2024/05/01/a.parquet"].schema_version == 2

    assert [p.object_key for p in db.partitions("npm/packages", year=2024, month=5)] == [
        "npm/2024/05/01/a.ndjson",
        "npm/2024/05/01/a.parquet",
        "npm/2024/05/02/a.ndjson",
    ]
    assert len(db.partitions("npm/packages", year=2024, month=5, day=1)) == 2
    assert len(db.partitions("npm/packages", year=2023)) == 1
    assert len(db.partitions("npm/packages", day=1)) == 3
    assert db.partitions("npm/packages", year=2022) == []
    assert [p.object_key for p in db.partitions("pypi/releases")] == ["pypi/2024/05/01/a.ndjson"]

    # upsert: same key, new content replaces the row (no duplicate)
    db.add_partitions([_part("npm/2024/05/01/a.ndjson", records=99, bytes=12345, run_id="r2")])
    (updated,) = [p for p in db.partitions("npm/packages", year=2024, month=5, day=1) if p.format == "ndjson"]
    assert (updated.records, updated.bytes, updated.run_id) == (99, 12345, "r2")
    assert updated.min_ingested_at is None
    assert len(db.partitions("npm/packages")) == 5

    db.delete_partitions(["npm/2024/05/01/a.parquet", "does/not/exist"])
    db.delete_partitions([])
    assert [p.object_key for p in db.partitions("npm/packages", year=2024, month=5, day=1)] == [
        "npm/2024/05/01/a.ndjson"
    ]
    assert len(db.partitions("pypi/releases")) == 1


def test_partitions_bulk_chunks(db: MetaDB) -> None:
    rows = [_part(f"bulk/{i:04d}.ndjson", ns="bulk", d=1 + i % 28) for i in range(250)]
    db.add_partitions(rows)
    assert len(db.partitions("bulk")) == 250
    db.delete_partitions([r.object_key for r in rows[:230]])
    assert sorted(p.object_key for p in db.partitions("bulk")) == [r.object_key for r in rows[230:]]


def test_add_partitions_is_atomic(db: MetaDB) -> None:
    good = _part("atomic/ok.ndjson", ns="atomic")
    bad = dataclasses.replace(good, object_key="atomic/bad.ndjson")
    object.__setattr__(bad, "namespace", None)  # violates NOT NULL inside the batch
    with pytest.raises(Exception):  # noqa: B017 - driver-specific IntegrityError
        db.add_partitions([good, bad])
    assert db.partitions("atomic") == []
    db.add_partitions([good])  # connection still usable after the rollback
    assert len(db.partitions("atomic")) == 1


# --------------------------------------------------------------------------- concurrency


def test_concurrent_writes_from_threads(db: MetaDB) -> None:
    threads_n, ops_n = 8, 200
    barrier = threading.Barrier(threads_n)
    errors: list[BaseException] = []
    failed_ids: list[int] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            src = f"t{t}"
            for i in range(ops_n):
                op = i % 4
                if op == 0:
                    failed_ids.append(db.add_failed(src, f"e{i}", payload=b"p" * 5000, run_id=src))
                elif op == 1:
                    db.save_cursor(src, str(i), key=f"k{i}")
                elif op == 2:
                    db.start_run(f"{src}-r{i}", src, "spider", {"i": i}, "h")
                    db.finish_run(f"{src}-r{i}", "finished", i, 0, 0, i, {})
                else:
                    db.add_partitions([_part(f"{src}/{i}.ndjson", ns=src, records=i)])
                    assert db.get_cursor(src, f"k{i - 2}") == str(i - 2)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
    assert not errors, errors
    per_op = ops_n // 4
    assert len(failed_ids) == len(set(failed_ids)) == threads_n * per_op
    assert db.count_failed() == threads_n * per_op
    for t in range(threads_n):
        src = f"t{t}"
        assert db.count_failed(src, run_id=src) == per_op
        assert {r["cursor_key"]: r["cursor_value"] for r in db.cursors(src)} == {
            f"k{i}": str(i) for i in range(1, ops_n, 4)
        }
        runs = db.last_runs(src, limit=1000)
        assert len(runs) == per_op and all(r["finish_reason"] == "finished" for r in runs)
        assert sorted(p.records for p in db.partitions(src)) == list(range(3, ops_n, 4))


WRITER_SCRIPT = """
import sys
from crawler.meta import MetaDB
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with MetaDB.connect(url) as db:
    for i in range(n):
        db.save_cursor(name, str(i), key=f"k{i}")
        db.add_failed(name, "e", run_id=name)
"""


def test_concurrent_writes_from_processes(db_url: str) -> None:
    """A crawl and other processes (e.g. `scrapy status`) share one DB file."""
    procs_n, n = 4, 100
    with MetaDB.connect(db_url) as reader:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER_SCRIPT, db_url, f"p{p}", str(n)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for p in range(procs_n)
        ]
        while any(p.poll() is None for p in procs):
            reader.count_failed()  # concurrent reads must not break the writers
            reader.cursors()
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        for p in range(procs_n):
            assert reader.count_failed(f"p{p}", run_id=f"p{p}") == n
            assert len(reader.cursors(f"p{p}")) == n
            assert reader.get_cursor(f"p{p}", f"k{n - 1}") == str(n - 1)


def test_exclusive_lock_holds_off_another_connection(db_url: str) -> None:
    """Two connections (as two workers would have): the second waits until the first releases the lock."""
    import time

    first, second = MetaDB.connect(db_url), MetaDB.connect(db_url)
    events: list[str] = []
    holding = threading.Event()

    def hold() -> None:
        with first.exclusive("catalog:npm"):
            holding.set()
            events.append("first in")
            time.sleep(0.4)
            events.append("first out")

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    with second.exclusive("catalog:npm"):
        events.append("second in")
    thread.join()
    assert events == ["first in", "first out", "second in"]
    first.close()
    second.close()


def test_sqlite_connects_while_another_process_writes(tmp_path: Path) -> None:
    """A second worker or shard on this host opens the metadata DB while the first is writing: it waits
    for the write (SQLite's busy timeout; the switch to WAL mode, which SQLite does not wait for, is retried)."""
    import time

    for name, prepared in (("fresh.db", False), ("wal.db", True)):
        path = tmp_path / name
        if prepared:
            MetaDB.connect(f"sqlite:///{path}").close()  # created, in WAL mode
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO t VALUES (1)")
        release = threading.Timer(0.3, lambda conn=holder: conn.execute("COMMIT"))
        release.start()
        started = time.monotonic()
        MetaDB.connect(f"sqlite:///{path}").close()
        assert time.monotonic() - started >= 0.25, name  # it waited for the writer, and then connected
        release.join()
        holder.close()
