"""SafeQueryEngine: reads of the platform's views only, whatever the SQL; cut off when too long or too big."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from crawler.query.sandbox import (
    Limits,
    QueryBusy,
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    SafeQueryEngine,
    _worker_env,
    check_sql,
    open_locked,
)
from crawler.storage import ObjectStore, open_store
from tests.fakes.s3 import fake_aws_env
from tests.query import (
    ENDLESS,
    FILE_READS,
    HIDDEN_WRITES,
    PACKAGES,
    PASSWD_MARK,
    REFUSED,
    UPDATED,
    write_npm,
)

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    root = tmp_path_factory.mktemp("sandbox")
    store = open_store(str(root / "data"))
    write_npm(store, f"sqlite:///{root / 'meta.db'}")
    return store


@pytest.fixture(scope="module", params=["thread", "process"])
def engine(request: pytest.FixtureRequest, store: ObjectStore) -> Iterator[SafeQueryEngine]:
    # queue_wait: tests that fire many queries at once wait for a worker rather than get QueryBusy
    with SafeQueryEngine(
        store, row_cap=10, timeout=TIMEOUT, isolation=request.param, workers=2, queue_wait=30
    ) as engine:
        yield engine


@pytest.fixture(scope="module")
def process_engine(store: ObjectStore) -> Iterator[SafeQueryEngine]:
    with SafeQueryEngine(store, row_cap=10, timeout=TIMEOUT, workers=2, kill_grace=1.0, queue_wait=30) as engine:
        yield engine


def assert_healthy(engine: SafeQueryEngine) -> None:
    assert engine.run("SELECT count(*) FROM npm_package").rows == [[PACKAGES]]


# -- what is allowed -------------------------------------------------------------------------------


def test_views_latest_and_history(engine: SafeQueryEngine) -> None:
    result = engine.run("SELECT name, version FROM npm_package WHERE name IN ('pkg-00', 'pkg-24') ORDER BY name")
    assert result.columns == ["name", "version"]
    assert result.types == ["VARCHAR", "VARCHAR"]
    assert result.rows == [["pkg-00", "2.0.0"], ["pkg-24", "1.0.0"]]
    assert result.truncated is False and result.row_count == 2 and result.elapsed_ms >= 0
    assert engine.run("SELECT count(*) FROM npm_package_history").rows == [[PACKAGES + UPDATED]]
    assert engine.run("SELECT count(*) FROM pypi_package").rows == [[0]]  # no data: an empty view


def test_row_cap_truncates(engine: SafeQueryEngine) -> None:
    result = engine.run("SELECT * FROM range(100)")
    assert result.row_count == 10 and result.truncated is True
    assert result.rows == [[i] for i in range(10)]
    exact = engine.run("SELECT * FROM range(10)")
    assert exact.row_count == 10 and exact.truncated is False


def test_values_come_back_as_json(engine: SafeQueryEngine) -> None:
    sql = (
        "SELECT 1.50::DECIMAL(4,2) d, 170141183460469231731687303715884105727::HUGEINT h, 'nan'::DOUBLE n, "
        "TIMESTAMPTZ '2026-11-25 08:00:00+00' t, DATE '2026-11-25' dt, INTERVAL 1 DAY i, 'ab'::BLOB b, "
        "[1, 2] l, {'k': 'v'} s, MAP([1], ['x']) m, NULL z"
    )
    (row,) = engine.run(sql).rows
    assert row == [
        "1.50",
        "170141183460469231731687303715884105727",
        "nan",
        "2026-11-25T08:00:00+00:00",
        "2026-11-25",
        "1 day, 0:00:00",
        "YWI=",
        [1, 2],
        {"k": "v"},
        {"1": "x"},
        None,
    ]


def test_describe_show_and_introspection_are_reads(engine: SafeQueryEngine) -> None:
    described = engine.run("DESCRIBE npm_package")
    assert "name" in [row[0] for row in described.rows]
    tables = engine.run("SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'npm%' ORDER BY 1")
    assert tables.rows == [["npm_package"], ["npm_package_history"]]
    assert engine.run("SELECT 1 /* ; DROP VIEW npm_package */;").rows == [[1]]


def test_sql_errors_fail(engine: SafeQueryEngine) -> None:
    with pytest.raises(QueryFailed, match="syntax error"):
        engine.run("SELECT FROM WHERE")
    with pytest.raises(QueryFailed, match="does not exist"):
        engine.run("SELECT * FROM no_such_table")


# Catalog reads: each answers without the server's paths of the data files, or is refused.
INTROSPECTION = [
    "SELECT sql FROM duckdb_views()",
    "SELECT * FROM duckdb_views",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM sqlite_schema",
    "SELECT * FROM information_schema.views",
    "SELECT * FROM pg_catalog.pg_views",
    "SELECT * FROM duckdb_tables()",
    "SELECT * FROM duckdb_columns()",
    "SELECT * FROM duckdb_functions() WHERE macro_definition IS NOT NULL",
    "SELECT * FROM information_schema.tables",
    "SELECT * FROM information_schema.columns",
    "SELECT * FROM pg_catalog.pg_class",
    "SHOW ALL TABLES",
    "SUMMARIZE npm_package",
    "SELECT filename FROM npm_package",
]


@pytest.mark.parametrize("sql", INTROSPECTION)
def test_no_answer_reveals_where_the_data_files_are(engine: SafeQueryEngine, store: ObjectStore, sql: str) -> None:
    root = store.uri.removeprefix("file://")
    try:
        answer = json.dumps(engine.run(sql).rows, default=str)
    except QueryError as refused:
        answer = refused.message
    assert root not in answer and ".parquet" not in answer


# -- what is refused -------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", REFUSED)
def test_refused(engine: SafeQueryEngine, sql: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        engine.run(sql)
    assert PASSWD_MARK not in caught.value.message


@pytest.mark.parametrize("sql", HIDDEN_WRITES)
def test_writes_hidden_in_a_select_do_not_parse(engine: SafeQueryEngine, sql: str) -> None:
    with pytest.raises((QueryRejected, QueryFailed)):
        engine.run(sql)
    assert_healthy(engine)
    assert engine.run("SELECT count(*) FROM npm_package_history").rows == [[PACKAGES + UPDATED]]


def test_nothing_was_written_and_the_engine_is_healthy(engine: SafeQueryEngine) -> None:
    for path in (
        "/tmp/sandbox-escape.csv",
        "/tmp/sandbox-escape.parquet",
        "/tmp/sandbox-escape",
        "/tmp/sandbox-escape.db",
    ):
        assert not Path(path).exists()
    assert_healthy(engine)


def test_python_variables_are_not_tables(store: ObjectStore) -> None:
    # DuckDB's replacement scan finds a pyarrow table by its name in the frame that calls execute().
    secret_table = pa.table({"secret": ["do-not-leak"]})  # noqa: F841  (found by name from SQL)
    assert duckdb.connect().execute("SELECT * FROM secret_table").fetchall() == [("do-not-leak",)]
    con = open_locked(store, Limits())
    try:
        with pytest.raises(duckdb.CatalogException):
            con.execute("SELECT * FROM secret_table")
    finally:
        con.close()
    with SafeQueryEngine(store, isolation="thread") as engine, pytest.raises(QueryFailed, match="does not exist"):
        engine.run("SELECT * FROM secret_table")


@pytest.mark.parametrize("sql", ENDLESS)
def test_endless_queries_are_cut_off(engine: SafeQueryEngine, sql: str) -> None:
    started = time.monotonic()
    with pytest.raises(QueryFailed) as caught:  # QueryTimeout, or out of memory for the cross join
        engine.run(sql)
    if "range(10000000000) a" not in sql:
        assert isinstance(caught.value, QueryTimeout)
    assert time.monotonic() - started < TIMEOUT + 5
    assert_healthy(engine)


# -- the DuckDB lockdown alone (as if the statement check let everything through) -----------------


@pytest.fixture
def locked(store: ObjectStore) -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_locked(store, Limits(timeout=TIMEOUT))
    yield con
    con.close()


@pytest.mark.parametrize("sql", FILE_READS)
def test_lockdown_blocks_file_reads(locked: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(duckdb.Error) as caught:  # PermissionException, or "no such table" for FROM '<path>'
        locked.execute(sql).fetchall()
    assert PASSWD_MARK not in str(caught.value)


@pytest.mark.parametrize(
    "sql",
    [
        "COPY (SELECT 1) TO '/tmp/sandbox-escape.csv'",
        "EXPORT DATABASE '/tmp/sandbox-escape'",
        "ATTACH '/tmp/sandbox-escape.db' AS escape",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET lock_configuration = false",
        "RESET lock_configuration",
        "SET allowed_directories = ['/']",
        "SET threads = 64",
        "SET temp_directory = '/tmp/sandbox-escape'",
        "SET profiling_output = '/tmp/sandbox-escape.json'",
        "PRAGMA enable_profiling",
        "SELECT * FROM enable_logging()",
        "SELECT * FROM add_grammar_extension('x')",
    ],
)
def test_lockdown_blocks_writes_and_settings(locked: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(duckdb.Error):
        locked.execute(sql)
    assert not Path("/tmp/sandbox-escape.csv").exists() and not Path("/tmp/sandbox-escape").exists()


def test_lockdown_still_reads_the_views(locked: duckdb.DuckDBPyConnection) -> None:
    assert locked.execute("SELECT count(*) FROM npm_package").fetchall() == [(PACKAGES,)]
    settings = dict(locked.execute("SELECT name, value FROM duckdb_settings()").fetchall())
    assert settings["enable_external_access"] == "false"
    assert settings["lock_configuration"] == "true"
    assert settings["autoinstall_known_extensions"] == "false"
    assert settings["autoload_known_extensions"] == "false"
    assert settings["temp_directory"] == ""


def test_proxy_credentials_from_the_environment_are_blanked(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:proxy-password@proxy.invalid:3128")
    assert "proxy-password" in duckdb.connect().execute("SELECT current_setting('http_proxy')").fetchone()[0]
    con = open_locked(store, Limits())
    try:
        assert con.execute("SELECT current_setting('http_proxy')").fetchone() == ("",)
    finally:
        con.close()


def test_statement_check() -> None:
    assert check_sql("SELECT 1;").type == duckdb.StatementType.SELECT
    with pytest.raises(QueryRejected, match="exactly one"):
        check_sql("SELECT 1; SELECT 2")
    with pytest.raises(QueryRejected, match="only SELECT"):
        check_sql("DROP VIEW npm_package")
    with pytest.raises(QueryRejected, match="not allowed"):
        check_sql("SELECT * FROM range(3) r JOIN glob('*') g ON true")


# -- process isolation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT len(range(300000000))",  # one 15 GB list: outside DuckDB's memory limit
        "SELECT length(repeat('x', 2000000000))",
        "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r WHERE length(s) < 2000000000) "
        "SELECT max(length(s)) FROM r",
    ],
)
def test_memory_bombs_fail_in_the_worker(process_engine: SafeQueryEngine, sql: str) -> None:
    with pytest.raises(QueryFailed):
        process_engine.run(sql)
    assert_healthy(process_engine)


def test_a_worker_that_cannot_be_interrupted_is_killed_and_replaced(process_engine: SafeQueryEngine) -> None:
    restarts = process_engine.status()["restarts"]
    started = time.monotonic()
    with pytest.raises(QueryTimeout):
        # lpad of 1 GB is one long call that never checks for interrupts.
        process_engine.run("SELECT length(lpad('x', 1000000000, 'y'))")
    assert time.monotonic() - started < TIMEOUT + 1.0 + 3
    assert process_engine.status()["restarts"] == restarts + 1
    assert_healthy(process_engine)
    deadline = time.monotonic() + 30
    while process_engine.status()["alive"] < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process_engine.status()["alive"] == 2


def test_concurrent_queries(engine: SafeQueryEngine) -> None:
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: engine.run(f"SELECT {i} + count(*) FROM npm_package").rows, range(16)))
    assert results == [[[i + PACKAGES]] for i in range(16)]


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_busy_when_every_worker_is_taken(store: ObjectStore, isolation: str) -> None:
    with SafeQueryEngine(store, timeout=TIMEOUT, isolation=isolation, workers=1, queue_wait=0.2) as engine:  # type: ignore[arg-type]
        errors: list[Exception] = []

        def long() -> None:
            try:
                engine.run("SELECT count(*) FROM range(1000000000000)")
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=long)
        thread.start()
        time.sleep(0.5)
        with pytest.raises(QueryBusy):
            engine.run("SELECT 1")
        thread.join()
        assert [type(e) for e in errors] == [QueryTimeout]
        assert engine.run("SELECT 1").rows == [[1]]


def test_workers_do_not_get_the_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_API_KEYS", "secret-key")
    monkeypatch.setenv("STORAGE_URI", "/data")
    env = _worker_env()
    assert "QUERY_API_KEYS" not in env and env["STORAGE_URI"] == "/data"


def test_s3_store(s3_server, monkeypatch: pytest.MonkeyPatch, store: ObjectStore) -> None:
    fake_aws_env(monkeypatch, s3_server.endpoint_url)
    s3 = open_store(f"s3://{s3_server.bucket}/sandbox-{uuid.uuid4().hex[:8]}")
    for obj in store.list(""):
        if not obj.key.startswith("_meta/"):
            s3.put_bytes(obj.key, store.get_bytes(obj.key))
    with SafeQueryEngine(s3, timeout=TIMEOUT, workers=1) as engine:  # workers read S3 with the same environment
        assert engine.run("SELECT count(*) FROM npm_package").rows == [[PACKAGES]]
        assert engine.run("SELECT count(*) FROM npm_package_history").rows == [[PACKAGES + UPDATED]]
        for sql in ("SELECT * FROM read_text('/etc/passwd')", "FROM '/etc/passwd'"):
            with pytest.raises(QueryRejected):
                engine.run(sql)
        assert_healthy(engine)
    con = open_locked(s3, Limits())  # and the lockdown alone, over Arrow datasets instead of files
    try:
        assert con.execute("SELECT count(*) FROM npm_package").fetchall() == [(PACKAGES,)]
        with pytest.raises(duckdb.PermissionException):
            con.execute("SELECT * FROM read_text('/etc/passwd')")
    finally:
        con.close()
