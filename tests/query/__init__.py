"""Shared data and hostile queries for the SQL sandbox and API tests."""

from __future__ import annotations

from datetime import UTC, datetime

from crawler.meta import MetaDB
from crawler.pipelines.batching import Batcher
from crawler.pipelines.index import PartitionIndex
from crawler.pipelines.writer import BatchWriter
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import ObjectStore

PACKAGES = 25
UPDATED = 5  # packages written again by a second run: history has PACKAGES + UPDATED rows
PASSWD_MARK = "root:"  # in /etc/passwd on every Linux; must never appear in an answer


def write_npm(store: ObjectStore, meta_url: str) -> None:
    """Two runs through the platform's own writer and index: Parquet + NDJSON + catalog.json."""
    index = PartitionIndex(store, MetaDB.connect(meta_url))
    runs = [
        ("run-1", datetime(2026, 11, 24, 8, 0, tzinfo=UTC), range(PACKAGES), "1.0.0"),
        ("run-2", datetime(2026, 11, 25, 9, 30, tzinfo=UTC), range(UPDATED), "2.0.0"),
    ]
    for run_id, when, numbers, version in runs:
        batcher = Batcher(max_records=len(numbers), max_bytes=10**9, idle_seconds=60)
        batch = None
        for receipt, i in enumerate(numbers, 1):
            row = NpmPackage(name=f"pkg-{i:02d}", version=version, dependencies={"dep": "^1"}).to_row()
            row.update(_source="npm", _ingested_at=when, _run_id=run_id, _schema_version=1)
            batch = batcher.add(NpmPackage, row, receipt)
        assert batch is not None
        index.record(BatchWriter(store).write(batch), run_id)


# -- hostile queries -------------------------------------------------------------------------------
# Each must be refused before it runs (QueryRejected / HTTP 400).

FILE_READS = [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('/etc/passwd')",
    "SELECT * FROM read_csv('/etc/passwd', delim=':', header=false, columns={'a': 'VARCHAR'})",
    "SELECT * FROM read_text('/etc/passwd')",
    "SELECT * FROM read_text(['/etc/passwd'])",
    "SELECT * FROM read_blob('/etc/passwd')",
    "SELECT * FROM read_json('/etc/passwd')",
    "SELECT * FROM read_json_auto('/etc/passwd')",
    "SELECT * FROM read_json_objects('/etc/passwd')",
    "SELECT * FROM read_ndjson('/etc/passwd')",
    "SELECT * FROM read_ndjson_auto('/etc/passwd')",
    "SELECT * FROM read_parquet('/etc/passwd')",
    "SELECT * FROM parquet_scan('/etc/passwd')",
    "SELECT * FROM parquet_metadata('/etc/passwd')",
    "SELECT * FROM parquet_schema('/etc/passwd')",
    "SELECT * FROM read_duckdb('/etc/passwd')",
    "SELECT * FROM glob('/etc/*')",
    "SELECT * FROM sniff_csv('/etc/passwd')",
    "SELECT * FROM query_table('/etc/passwd')",
    "SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')",
    "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT * FROM read_text(''/etc/passwd'')'))",
    "FROM '/etc/passwd'",
    "SELECT * FROM '/etc/passwd'",
    'SELECT * FROM "/etc/passwd"',
    "SELECT * FROM 'file:///etc/passwd'",
    "SELECT * FROM '/etc/*'",
    "DESCRIBE '/etc/passwd'",
    "SUMMARIZE '/etc/passwd'",
    "FROM read_text('/etc/passwd') SELECT content",
    "SeLeCt * FrOm ReAd_TeXt('/etc/passwd')",
    "SELECT * FROM \"read_text\"('/etc/passwd')",
    "SELECT * FROM main.read_text('/etc/passwd')",
    "SELECT (SELECT content FROM read_text('/etc/passwd'))",
    "WITH f AS (SELECT * FROM read_text('/etc/passwd')) SELECT * FROM f",
    "SELECT * FROM range(1) r, LATERAL (SELECT * FROM read_text('/etc/passwd'))",
    "SELECT 1 WHERE EXISTS (SELECT * FROM read_blob('/etc/passwd'))",
    "SELECT * FROM npm_package UNION ALL BY NAME SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('data/npm/_metadata/catalog.json')",
]

STATEMENTS = [
    "COPY (SELECT 1) TO '/tmp/sandbox-escape.csv'",
    "COPY npm_package TO '/tmp/sandbox-escape.parquet' (FORMAT parquet)",
    "COPY npm_package FROM '/etc/passwd'",
    "EXPORT DATABASE '/tmp/sandbox-escape'",
    "IMPORT DATABASE '/tmp/sandbox-escape'",
    "ATTACH '/tmp/sandbox-escape.db' AS escape",
    "ATTACH ':memory:' AS m",
    "DETACH m",
    "USE m",
    "INSTALL httpfs",
    "FORCE INSTALL httpfs",
    "LOAD httpfs",
    "UPDATE EXTENSIONS",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "RESET lock_configuration",
    "SET threads = 64",
    "SET memory_limit = '100GB'",
    "SET VARIABLE leak = 1",
    "PRAGMA enable_profiling",
    "PRAGMA version",
    "PRAGMA database_list",
    "CREATE TABLE t AS SELECT 1",
    "CREATE VIEW v AS SELECT 1",
    "CREATE MACRO m() AS 1",
    "CREATE SECRET (TYPE s3, KEY_ID 'x', SECRET 'y')",
    "DROP VIEW npm_package",
    "INSERT INTO npm_package SELECT * FROM npm_package",
    "UPDATE npm_package SET name = 'x'",
    "DELETE FROM npm_package",
    "TRUNCATE npm_package",
    "ALTER VIEW npm_package RENAME TO gone",
    "CALL pragma_version()",
    "CALL enable_logging()",
    "CHECKPOINT",
    "VACUUM",
    "ANALYZE",
    "BEGIN TRANSACTION",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT * FROM read_text('/etc/passwd')",
    "PREPARE p AS SELECT 1",
    "PIVOT npm_package ON name",
    "SELECT 1; DROP VIEW npm_package",
    "SELECT 1; SELECT 2",
    "",
    "   ",
    "-- only a comment",
]

SIDE_EFFECTS = [
    "SELECT getenv('HOME')",
    "SELECT current_setting('http_proxy')",
    "SELECT current_setting('secret_directory')",
    "SELECT * FROM duckdb_settings()",
    "SELECT * FROM pg_settings",
    "SELECT * FROM pg_catalog.pg_settings",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM which_secret('s3://bucket/key', 's3')",
    "SELECT * FROM duckdb_logs",
    "SELECT * FROM enable_logging()",
    "SELECT * FROM enable_profiling()",
    "SELECT * FROM checkpoint()",
    "SELECT * FROM add_grammar_extension('x')",
    "SELECT * FROM duckdb_external_resources()",
    "SELECT write_log('x')",
    "SELECT json_serialize_plan('SELECT * FROM read_text(''/etc/passwd'')')",
    "SELECT * FROM arrow_scan(1, 2, 3)",
    "SELECT * FROM pandas_scan(1)",
]

# Writes hidden inside a SELECT: DuckDB's grammar has no DML in CTEs or subqueries (a parse error, 422).
HIDDEN_WRITES = [
    "WITH gone AS (DELETE FROM npm_package RETURNING *) SELECT * FROM gone",
    "SELECT * FROM (INSERT INTO npm_package SELECT * FROM npm_package RETURNING *)",
    "WITH t AS (CREATE TABLE x AS SELECT 1) SELECT 1",
]

REFUSED = FILE_READS + STATEMENTS + SIDE_EFFECTS

# Each must be cut off by the timeout (or, for the cross join, by the memory limit).
ENDLESS = [
    "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
    "SELECT count(*) FROM range(1000000000000)",
    "SELECT sleep_ms(600000)",
    "SELECT count(*) FROM range(10000000000) a, range(10000000000) b",
]
