"""The wiring map of the platform: components, defaults, and the environment variables they read.

Every platform setting can be given in the environment under the same name (``STORAGE_URI=s3://…``),
on the command line (``-s STORAGE_URI=…``), or in a project that imports this module. A source's
crawl policy (rate, concurrency, retries, proxies, size cap) is declared with its spider, not here.
"""

from __future__ import annotations

import os

from crawler.scrapy_compat import AIOHTTP_HANDLER

# Arrow's allocator, chosen once when pyarrow is first imported (this module is read before it). The
# wheels' default, mimalloc, keeps freed pages resident: a bulk crawl of 10 M records peaked ~45 MB
# higher with it than with jemalloc, which returns them (measured in bench/). An explicit choice is kept.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(name) or default


BOT_NAME = "crawler"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"
COMMANDS_MODULE = "crawler.commands"

# -- storage and metadata ------------------------------------------------------------------------
# A folder (default ./data), file:///abs/path, or s3://bucket/prefix (endpoint and credentials from
# the standard AWS variables: AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
STORAGE_URI = _env("STORAGE_URI", "./data")
# sqlite:///path.db (default: <data folder>/_meta/meta.db)
META_DB_URL = _env("META_DB_URL")
# read as text, parsed and checked by crawler/config.py (a bad value: one error naming the setting)
BATCH_MAX_RECORDS = _env("BATCH_MAX_RECORDS", "1000")
BATCH_MAX_BYTES = _env("BATCH_MAX_BYTES", str(10 * 1024 * 1024))
BATCH_IDLE_SECONDS = _env("BATCH_IDLE_SECONDS", "30")
# batches of columnar items (bulk sources: Arrow tables of many records) are written as Parquet only
COLUMNAR_BATCH_MAX_RECORDS = _env("COLUMNAR_BATCH_MAX_RECORDS", "200000")
COLUMNAR_BATCH_MAX_BYTES = _env("COLUMNAR_BATCH_MAX_BYTES", str(64 * 1024 * 1024))
# a batch the store refuses is retried with back-off for this long (an outage of minutes), then given up
STORE_RETRY_SECONDS = _env("STORE_RETRY_SECONDS", "300")
# a metadata DB call whose connection is lost connects again and is retried this long; one unanswered this
# long (a black-holed network path) gives its connection up
META_DB_RETRY_SECONDS = _env("META_DB_RETRY_SECONDS", "300")
META_DB_TIMEOUT = _env("META_DB_TIMEOUT", "60")
# s3:// storage: how long one try waits to connect, and for the next bytes of an answer (botocore's defaults)
S3_CONNECT_TIMEOUT = _env("S3_CONNECT_TIMEOUT", "60")
S3_READ_TIMEOUT = _env("S3_READ_TIMEOUT", "60")
PARQUET_COMPRESSION = _env("PARQUET_COMPRESSION", "zstd")
DEAD_LETTER_SAMPLE_BYTES = _env("DEAD_LETTER_SAMPLE_BYTES", "4096")
RUN_ID = _env("RUN_ID")

# -- Iceberg tables (crawler/storage/iceberg.py) ---------------------------------------------------
# Every namespace is also an Iceberg table, committed batch by batch. The catalog: a SQLAlchemy URL
# (sqlite:///…, postgresql://…; default: the metadata DB) or an Iceberg REST endpoint (https://…, e.g.
# R2 Data Catalog, with ICEBERG_WAREHOUSE and the secret ICEBERG_TOKEN). ICEBERG_ENABLED=false: Parquet only.
ICEBERG_ENABLED = _env("ICEBERG_ENABLED", "true")
ICEBERG_CATALOG_URI = _env("ICEBERG_CATALOG_URI")
ICEBERG_CATALOG_NAME = _env("ICEBERG_CATALOG_NAME", "crawler")
ICEBERG_NAMESPACE = _env("ICEBERG_NAMESPACE", "crawler")
ICEBERG_WAREHOUSE = _env("ICEBERG_WAREHOUSE")
# ICEBERG_TOKEN is read from the environment (or -s) only: settings are logged, secrets must not be
# `scrapy compact` expires the snapshots older than this
ICEBERG_SNAPSHOT_RETENTION_HOURS = _env("ICEBERG_SNAPSHOT_RETENTION_HOURS", "168")
# the write path keeps at most this many snapshots per table (older ones are expired as it goes)
ICEBERG_SNAPSHOTS_KEPT = _env("ICEBERG_SNAPSHOTS_KEPT", "10")
# `scrapy query` and the query API read the Iceberg tables' snapshots rather than the partition index
QUERY_ICEBERG = _env("QUERY_ICEBERG", "false")

# -- sources -------------------------------------------------------------------------------------
# Each source declares its own settings (type, default, secret) in crawler/spiders/<name>/source.py;
# they are read from -s, this module, or the environment under their own names (README: per source).

# -- retries and proxies -------------------------------------------------------------------------
# RETRY_TIMES, RETRY_BACKOFF_BASE, RETRY_BACKOFF_MAX, RETRY_AFTER_MAX (a longer Retry-After is capped)
# and REQUEST_DEADLINE_SECONDS (no retry past it) come from each spider's policy; override them for
# one crawl with -s.
# a request that fails for good becomes a dead letter (counted and stored): a warning, not an error
RETRY_GIVE_UP_LOG_LEVEL = "WARNING"
PROXY_BENCH_SECONDS = float(_env("PROXY_BENCH_SECONDS", "300"))
PROXY_BENCH_MAX = float(_env("PROXY_BENCH_MAX", "3600"))

# -- distributed crawling (crawler/distributed) ---------------------------------------------------
# With REDIS_URL set (redis://host:6379/0), every `scrapy crawl` of a spider joins one shared crawl:
# scrapy-redis's queue and dupefilter, each request leased to the worker running it. Use
# META_DB_URL=postgresql://… so that the workers share runs, cursors, dead letters and partitions.
REDIS_URL = _env("REDIS_URL")
DISTRIBUTED_KEY_PREFIX = _env("DISTRIBUTED_KEY_PREFIX", "crawler")
DISTRIBUTED_HEARTBEAT_SECONDS = float(_env("DISTRIBUTED_HEARTBEAT_SECONDS", "5"))
DISTRIBUTED_WORKER_TIMEOUT = float(_env("DISTRIBUTED_WORKER_TIMEOUT", "30"))
DISTRIBUTED_POLL_SECONDS = float(_env("DISTRIBUTED_POLL_SECONDS", "0.1"))
DISTRIBUTED_WAIT_SECONDS = float(_env("DISTRIBUTED_WAIT_SECONDS", "60"))

# -- components ----------------------------------------------------------------------------------
ADDONS = {
    # swaps in the shared Redis scheduler when REDIS_URL is set, whatever the settings' origin
    "crawler.distributed.RedisAddon": 0,
}
EXTENSIONS = {
    # Scrapy's, but control items are not counted as dropped items
    "scrapy.extensions.corestats.CoreStats": None,
    "crawler.extensions.stats.CoreStats": 0,
    "crawler.extensions.services.Services": 0,
    "crawler.extensions.cursors.Cursors": 0,
    "crawler.distributed.extension.Distributed": 1,  # off unless REDIS_URL is set
    # Spidermon runs the monitors of crawler/monitors/ after CoreStats (0), which sets finish_reason on
    # the same signal, and before RunRecorder (10), so their outcome (spidermon/*) is in ingestion_runs
    "spidermon.contrib.scrapy.extensions.Spidermon": 5,
    "crawler.extensions.runs.RunRecorder": 10,
    "crawler.extensions.progress.Progress": 20,
}
ITEM_PIPELINES = {
    "crawler.pipelines.normalize.NormalizePipeline": 100,
    "crawler.pipelines.store.StorePipeline": 900,
}
# requests due later (a retry's back-off, Retry-After) wait in the scheduler, not in a download slot
SCHEDULER = "crawler.scheduler.Scheduler"
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
    "crawler.middlewares.retry.BackoffRetryMiddleware": 550,
    "crawler.middlewares.proxies.ProxyRotationMiddleware": 740,
    # APIs at configured endpoints, not pages: no robots.txt, cookies, meta refresh or offsite filter
    "scrapy.downloadermiddlewares.robotstxt.RobotsTxtMiddleware": None,
    "scrapy.downloadermiddlewares.cookies.CookiesMiddleware": None,
    "scrapy.downloadermiddlewares.httpauth.HttpAuthMiddleware": None,
    "scrapy.downloadermiddlewares.redirect.MetaRefreshMiddleware": None,
    "scrapy.downloadermiddlewares.offsite.OffsiteMiddleware": None,
}
SPIDER_MIDDLEWARES = {
    # no page graph to walk: no depth, URL length limits or meta-copy checks (a cost on every response)
    "scrapy.spidermiddlewares.urllength.UrlLengthMiddleware": None,
    "scrapy.spidermiddlewares.depth.DepthMiddleware": None,
    "scrapy.spidermiddlewares.metacopy.MetaCopyDetectionMiddleware": None,
    # closest to the spider: every request's unit of work, and its WorkDone after its output
    "crawler.middlewares.work.WorkMiddleware": 1000,
}
# Scrapy's aiohttp handler costs less CPU per response than the Twisted one (bench/npm_crawl.py); it
# supports proxies, size caps and data-loss detection the same way. (A private Scrapy path: crawler/scrapy_compat.py.)
DOWNLOAD_HANDLERS = {
    "http": AIOHTTP_HANDLER,
    "https": AIOHTTP_HANDLER,
}
# Items of one response go through the pipelines one after another: this keeps a checkpoint behind
# the records yielded before it (DESIGN §3.1) and avoids Scrapy's per-response fan-out of 100 tasks.
CONCURRENT_ITEMS = 1
ROBOTSTXT_OBEY = False
COOKIES_ENABLED = False
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False
USER_AGENT = _env("USER_AGENT", "scrapy-ingestion/0.1 (+data-ingestion platform)")
LOG_LEVEL = _env("LOG_LEVEL", "INFO")
FEED_EXPORT_ENCODING = "utf-8"

# -- monitoring ----------------------------------------------------------------------------------
# Spidermon checks every run when it closes (crawler/monitors/): finish reason, records, error rate,
# dead letters, cursor lag. A failed check is logged, and posted to MONITOR_WEBHOOK_URL (Slack-compatible)
# and/or emailed to MONITOR_EMAIL_TO when set. A spider may override a threshold with an attribute named
# like the setting in lower case (monitor_min_items = 0); -s NAME=value beats both.
SPIDERMON_ENABLED = _env("SPIDERMON_ENABLED", "true")
SPIDERMON_SPIDER_CLOSE_MONITORS = ["crawler.monitors.SpiderCloseSuite"]
SPIDERMON_EXPECTED_FINISH_REASONS = _env("SPIDERMON_EXPECTED_FINISH_REASONS", "finished")
MONITOR_MIN_ITEMS = int(_env("MONITOR_MIN_ITEMS", "1"))
# (log_count/ERROR + dead_letters) / (item_scraped_count + dead_letters)
MONITOR_MAX_ERROR_RATE = float(_env("MONITOR_MAX_ERROR_RATE", "0.05"))
# a run may add this many dead letters, or this share of its records if that is more (0: no share)
MONITOR_MAX_DEAD_LETTERS = int(_env("MONITOR_MAX_DEAD_LETTERS", "100"))
MONITOR_MAX_DEAD_LETTER_RATIO = float(_env("MONITOR_MAX_DEAD_LETTER_RATIO", "0"))
# the <source>/backlog a cursor-following run ends with (a feed: changes not yet stored)
MONITOR_MAX_CURSOR_LAG = int(_env("MONITOR_MAX_CURSOR_LAG", "10000"))
MONITOR_NOTIFY_ON_SUCCESS = _env("MONITOR_NOTIFY_ON_SUCCESS", "false")
MONITOR_ALERT_TIMEOUT = float(_env("MONITOR_ALERT_TIMEOUT", "10"))
# The webhook URL and the SMTP password are secrets: environment only, never logged or sent (not
# Scrapy's MAIL_* settings, which Scrapy prints at start-up with the other overridden settings).
MONITOR_WEBHOOK_URL = _env("MONITOR_WEBHOOK_URL")
MONITOR_EMAIL_TO = _env("MONITOR_EMAIL_TO", "")
MONITOR_EMAIL_FROM = _env("MONITOR_EMAIL_FROM")
MONITOR_SMTP_HOST = _env("MONITOR_SMTP_HOST", "localhost")
MONITOR_SMTP_PORT = int(_env("MONITOR_SMTP_PORT", "0"))  # 0: 25, or 465 with MONITOR_SMTP_SSL
MONITOR_SMTP_USER = _env("MONITOR_SMTP_USER")
MONITOR_SMTP_PASSWORD = _env("MONITOR_SMTP_PASSWORD")
MONITOR_SMTP_STARTTLS = _env("MONITOR_SMTP_STARTTLS", "false")
MONITOR_SMTP_SSL = _env("MONITOR_SMTP_SSL", "false")
# a progress line (items, rate, responses, dead letters, backlog and ETA) every this many seconds; 0: off;
# unset: every 5 s on a terminal, every 30 s into a log file (crawler/extensions/progress.py)
PROGRESS_INTERVAL = _env("PROGRESS_INTERVAL")

# -- storage lifecycle (scrapy compact) -----------------------------------------------------------
COMPACTION_TARGET_BYTES = int(_env("COMPACTION_TARGET_BYTES", str(64 * 1024 * 1024)))
# Keep raw NDJSON batches this many days (by partition date); 0 keeps them forever.
RAW_RETENTION_DAYS = int(_env("RAW_RETENTION_DAYS", "0"))

# -- read-only SQL API (scrapy serve) -------------------------------------------------------------
# API keys are secrets: QUERY_API_KEYS (comma-separated) is read from the environment only.
QUERY_API_HOST = _env("QUERY_API_HOST", "127.0.0.1")
QUERY_API_PORT = int(_env("QUERY_API_PORT", "8787"))
QUERY_ROW_CAP = int(_env("QUERY_ROW_CAP", "10000"))
QUERY_TIMEOUT_SECONDS = float(_env("QUERY_TIMEOUT_SECONDS", "10"))
# queries run in a pool of worker processes with a hard memory cap ("process"), or in threads ("thread")
QUERY_ISOLATION = _env("QUERY_ISOLATION", "process")
QUERY_WORKERS = int(_env("QUERY_WORKERS", "2"))
QUERY_MEMORY_LIMIT_MB = int(_env("QUERY_MEMORY_LIMIT_MB", "1024"))
QUERY_WORKER_MEMORY_MB = int(_env("QUERY_WORKER_MEMORY_MB", "3072"))
