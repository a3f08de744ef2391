-- Metadata database schema (operational metadata only, never the records themselves).
--
-- Portable on purpose. This exact file is applied by crawler/meta/db.py to a local SQLite file,
-- runs unchanged on Cloudflare D1 (wrangler d1 execute DB --file db/schema-minimal.sql)
-- and on PostgreSQL. Rules for editing it:
--   * no connection settings here (they are applied from Python, D1 rejects most of them),
--   * only CREATE ... IF NOT EXISTS, so applying the file twice is harmless,
--   * types TEXT, INTEGER and BIGINT only, timestamps are TEXT in ISO-8601 UTC with a trailing Z,
--   * no engine-specific functions or defaults, upserts are done by the application with
--     INSERT ... ON CONFLICT (...) DO UPDATE SET col = excluded.col
--   * no quotes or semicolons inside comments (the D1 statement splitter is simple).
-- failed_messages.id is INTEGER PRIMARY KEY, the SQLite rowid alias, so SQLite and D1 assign it
-- without any extra keyword. On PostgreSQL the Python backend attaches a sequence default to it.

CREATE TABLE IF NOT EXISTS ingestion_runs (
    run_id        TEXT NOT NULL PRIMARY KEY,
    source        TEXT NOT NULL,
    spider        TEXT NOT NULL,
    args          TEXT,               -- JSON object, secrets filtered out by the caller
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    finish_reason TEXT,
    items         BIGINT,
    errors        BIGINT,
    dead_letters  BIGINT,
    bytes_written BIGINT,
    stats         TEXT,               -- JSON object (Scrapy stats at close)
    host          TEXT
);

CREATE INDEX IF NOT EXISTS ingestion_runs_source_started
    ON ingestion_runs (source, started_at);

CREATE INDEX IF NOT EXISTS ingestion_runs_started
    ON ingestion_runs (started_at);

CREATE TABLE IF NOT EXISTS sync_state (
    source       TEXT NOT NULL,
    cursor_key   TEXT NOT NULL,
    cursor_value TEXT,                -- opaque to this layer (a feed position is stored as a string)
    updated_at   TEXT NOT NULL,
    run_id       TEXT,
    PRIMARY KEY (source, cursor_key)
);

CREATE TABLE IF NOT EXISTS failed_messages (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    run_id         TEXT,
    reason         TEXT NOT NULL,
    url            TEXT,
    payload_sample TEXT,              -- bounded sample, truncation marked in the text
    attempts       INTEGER NOT NULL,
    created_at     TEXT NOT NULL,
    replayed_at    TEXT
);

CREATE INDEX IF NOT EXISTS failed_messages_source
    ON failed_messages (source, replayed_at);

CREATE INDEX IF NOT EXISTS failed_messages_run
    ON failed_messages (run_id);

CREATE TABLE IF NOT EXISTS r2_partitions (
    object_key      TEXT NOT NULL PRIMARY KEY,
    namespace       TEXT NOT NULL,
    year            INTEGER NOT NULL,
    month           INTEGER NOT NULL,
    day             INTEGER NOT NULL,
    format          TEXT NOT NULL,    -- ndjson or parquet (validated by the application)
    records         BIGINT NOT NULL,
    bytes           BIGINT NOT NULL,
    min_ingested_at TEXT,
    max_ingested_at TEXT,
    run_id          TEXT,
    schema_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS r2_partitions_ns_date
    ON r2_partitions (namespace, year, month, day);
