"""Metadata database: ingestion runs, sync cursors, dead letters and the R2 partition catalogue.

Holds operational metadata only, never the ingested records.  The schema lives in
``schema-minimal.sql`` next to this module (symlinked as ``db/schema-minimal.sql``) and is
portable: the same file runs on SQLite (default, stdlib ``sqlite3``), Cloudflare D1 and
PostgreSQL (``psycopg`` 3, imported lazily).

All SQL in this module is written with ``?`` placeholders; :meth:`_Backend.q` rewrites them for
backends with another paramstyle (PostgreSQL: ``%s``), so the SQL text must contain no literal
``?`` or ``%``.  Adding a backend means adding one small ``_Backend`` subclass and one branch in
:meth:`MetaDB.connect`.

Secrets: this layer cannot recognise secrets and stores what it is given.  Callers must filter
``args`` (tokens, passwords, signed URLs ...) before :meth:`MetaDB.start_run`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = [
    "DEFAULT_PAYLOAD_LIMIT",
    "PARTITION_FORMATS",
    "MetaDB",
    "MetaDBUnavailable",
    "PartitionRow",
    "schema_sql",
    "utcnow",
]

SCHEMA_FILE = "schema-minimal.sql"
DEFAULT_PAYLOAD_LIMIT = 4096
MIN_PAYLOAD_LIMIT = 64
DEFAULT_BUSY_TIMEOUT = 30.0
#: how long a call waits for the database's answer before its connection is given up (seconds)
DEFAULT_STATEMENT_TIMEOUT = 60.0
#: how long a call keeps trying a database it lost the connection to (seconds; 0 = no retry)
DEFAULT_RETRY_SECONDS = 300.0
#: back-off between tries, doubling
_RETRY_FIRST_DELAY, _RETRY_MAX_DELAY = 0.5, 10.0
#: the longest a given-up database is left alone before a call tries it again (seconds)
_MAX_REST = 30.0


class MetaDBUnavailable(ConnectionError):
    """The metadata DB was given up on moments ago: this call was not tried."""


PARTITION_FORMATS = frozenset({"ndjson", "parquet"})
# Bound-parameter chunk size for ``IN (...)`` lists (D1 allows 100 bound parameters).
_IN_CHUNK = 100
#: the upsert of a cursor (source, key, value, updated_at, run_id)
SAVE_CURSOR_SQL = (
    "INSERT INTO sync_state (source, cursor_key, cursor_value, updated_at, run_id) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (source, cursor_key) DO UPDATE SET cursor_value = excluded.cursor_value, "
    "updated_at = excluded.updated_at, run_id = excluded.run_id"
)
T = TypeVar("T")
logger = logging.getLogger(__name__)
# Arbitrary constant for pg_advisory_xact_lock while applying the schema.
_PG_SCHEMA_LOCK = 0x6D657461  # "meta"

_RUN_COLUMNS = (
    "run_id, source, spider, args, started_at, finished_at, finish_reason, items, errors, "
    "dead_letters, bytes_written, stats, host"
)
_FAILED_COLUMNS = "id, source, run_id, reason, url, payload_sample, attempts, created_at, replayed_at"


def utcnow() -> str:
    """Current UTC time as ISO-8601 with millisecond precision and a ``Z`` suffix."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def schema_sql() -> str:
    """Text of the portable schema file shipped next to this module."""
    return resources.files(__package__ or "crawler.meta").joinpath(SCHEMA_FILE).read_text("utf-8")


@dataclass(frozen=True, slots=True)
class PartitionRow:
    """One stored object in R2 (a row of ``r2_partitions``).

    ``created_at`` may be left ``None`` when adding rows; the DB layer fills in the current time.
    """

    object_key: str
    namespace: str
    year: int
    month: int
    day: int
    format: str
    records: int
    bytes: int
    min_ingested_at: str | None = None
    max_ingested_at: str | None = None
    run_id: str | None = None
    schema_version: int = 1
    created_at: str | None = None

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "object_key",
        "namespace",
        "year",
        "month",
        "day",
        "format",
        "records",
        "bytes",
        "min_ingested_at",
        "max_ingested_at",
        "run_id",
        "schema_version",
        "created_at",
    )

    def __post_init__(self) -> None:
        if not self.object_key:
            raise ValueError("PartitionRow.object_key must not be empty")
        if self.format not in PARTITION_FORMATS:
            raise ValueError(f"PartitionRow.format must be one of {sorted(PARTITION_FORMATS)}: {self.format!r}")
        if not 1 <= self.month <= 12 or not 1 <= self.day <= 31:
            raise ValueError(f"invalid partition date {self.year}-{self.month}-{self.day}")

    def as_tuple(self) -> tuple[Any, ...]:
        """Values in :attr:`COLUMNS` order."""
        return tuple(getattr(self, c) for c in self.COLUMNS)


# --------------------------------------------------------------------------- helpers


def _json_default(obj: Any) -> Any:
    if isinstance(obj, dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, bytes | bytearray):
        return bytes(obj).decode("utf-8", errors="replace")
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, sort_keys=True, ensure_ascii=False)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _clean_text(text: str) -> str:
    """Make ``text`` storable everywhere: no lone surrogates, no NUL (PostgreSQL rejects it)."""
    return text.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")


def payload_sample(payload: bytes | bytearray | memoryview | str | None, limit: int) -> str | None:
    """Bounded text sample of ``payload``: at most ``limit`` characters including the marker
    ``…[truncated, N bytes total]`` that is appended when the payload did not fit (N = size of the
    original payload, in UTF-8 bytes for ``str``).  Bytes are decoded as UTF-8 with replacement.
    """
    if payload is None:
        return None
    if isinstance(payload, bytes | bytearray | memoryview):
        raw = bytes(payload)
        total = len(raw)
        # Every decoded char consumes <= 4 bytes, so this prefix yields > limit whole chars
        # whenever it is shorter than the payload: no need to decode a 100 MB body.
        prefix_len = (limit + 1) * 4
        text = raw[:prefix_len].decode("utf-8", errors="replace")
        truncated = total > prefix_len or len(text) > limit
    else:
        text = str(payload)
        truncated = len(text) > limit
        total = len(text.encode("utf-8", errors="replace")) if truncated else 0
    if truncated:
        marker = f"…[truncated, {total} bytes total]"
        text = text[: limit - len(marker)] + marker
    return _clean_text(text)


def _parse_sqlite_target(url: str) -> str:
    """``sqlite:///abs/path.db`` / ``sqlite:///:memory:`` / ``sqlite://rel.db`` / plain path."""
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://") :].split("?", 1)[0]
        if rest in ("/:memory:", ":memory:", "", "/"):
            return ":memory:"
        return rest
    return url


def _redact(url: str) -> str:
    """URL without password, for ``repr``/errors."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


# --------------------------------------------------------------------------- backends


class _Backend:
    """Minimal driver interface used by :class:`MetaDB` (callers hold MetaDB's lock)."""

    name: ClassVar[str] = "abstract"
    placeholder: ClassVar[str] = "?"

    def q(self, sql: str) -> str:
        """Rewrite ``?`` placeholders into this backend's paramstyle."""
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Execute a write; returns the affected row count."""
        raise NotImplementedError

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        """Execute an INSERT into a table with an ``id`` key and return the new id."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[None]:
        raise NotImplementedError
        yield  # pragma: no cover

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """A transaction that holds the cross-process lock ``name`` (default: the database's write lock)."""
        with self.transaction():
            yield

    def apply_schema(self, script: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    #: errors meaning the connection to the database was lost (worth a new connection and another try)
    connection_errors: ClassVar[tuple[type[BaseException], ...]] = ()

    def reset(self) -> None:
        """Drop a lost connection; the next call connects again."""

    @contextmanager
    def deadline(self) -> Iterator[None]:
        """Bound the time of one call (a database behind a dead network path never answers)."""
        yield


class _SQLiteBackend(_Backend):
    """stdlib ``sqlite3``: one autocommit connection shared by threads (MetaDB serialises use)."""

    name = "sqlite"
    placeholder = "?"

    def __init__(self, path: str, busy_timeout: float) -> None:
        if path != ":memory:" and not path.startswith("file:"):
            path = os.path.expanduser(path)
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # isolation_level=None: autocommit, every statement outside BEGIN commits on its own.
        self.conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        if path != ":memory:":
            self._use_wal(busy_timeout)
        # In WAL mode NORMAL is durable against process crashes (SIGKILL); only an OS crash or
        # power loss can roll back the last commits.
        self.conn.execute("PRAGMA synchronous = NORMAL")

    def _use_wal(self, busy_timeout: float) -> None:
        """Switch to WAL once per database file. Switching needs the database to itself: SQLite answers
        "locked" at once, whatever the busy timeout, while another process (a second worker or shard on
        this host) writes, so it is retried; a database already in WAL mode needs no switch."""
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
            return
        deadline = time.monotonic() + busy_timeout
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, tuple(params)).fetchall()]

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, tuple(params)).rowcount

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, (tuple(r) for r in rows))

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        cur = self.conn.execute(sql, tuple(params))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front (waiting up to busy_timeout), avoiding the
        # read-to-write upgrade deadlock that busy handlers cannot resolve.
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def apply_schema(self, script: str) -> None:
        try:
            self.conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nCOMMIT;")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()


class _PostgresBackend(_Backend):
    """psycopg 3: one autocommit connection shared by threads (MetaDB serialises use), opened again when
    it is lost. A call that gets no answer within ``timeout`` seconds has its socket shut down from a
    watchdog thread: libpq then fails the call (a black-holed path would otherwise block it for ever)."""

    name = "postgresql"
    placeholder = "%s"

    def __init__(self, url: str, timeout: float = DEFAULT_STATEMENT_TIMEOUT) -> None:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError("the PostgreSQL metadata backend needs psycopg 3 (psycopg[binary])") from exc
        self.url = url
        self.timeout = timeout
        self.connection_errors = (psycopg.OperationalError, psycopg.InterfaceError)
        self._conn: Any = None
        self.conn  # noqa: B018  (connect now: a wrong URL is an error at start)

    @property
    def conn(self) -> Any:
        import psycopg
        from psycopg.rows import dict_row

        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self.url, autocommit=True, row_factory=dict_row, connect_timeout=max(1, round(self.timeout))
            )
        return self._conn

    def reset(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @contextmanager
    def deadline(self) -> Iterator[None]:
        conn = self.conn
        watchdog = threading.Timer(self.timeout, shut_down_socket, (conn,))
        watchdog.daemon = True
        watchdog.start()
        try:
            yield
        finally:
            watchdog.cancel()

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.conn.execute(self.q(sql), tuple(params)).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(self.q(sql), tuple(params)).rowcount

    def run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(self.q(sql), [tuple(r) for r in rows])

    def insert_id(self, sql: str, params: Sequence[Any]) -> int:
        row = self.conn.execute(self.q(sql + " RETURNING id"), tuple(params)).fetchone()
        assert row is not None
        return int(row["id"])

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
            yield

    def apply_schema(self, script: str) -> None:
        with self.conn.transaction():
            # Serialise concurrent first-time setups (CREATE ... IF NOT EXISTS can race on PG).
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_SCHEMA_LOCK,))
            self.conn.execute(script)  # no parameters: psycopg allows several statements
            # failed_messages.id is the SQLite rowid alias; on PostgreSQL it needs a sequence.
            row = self.conn.execute("SELECT to_regclass('failed_messages_id_seq') AS seq").fetchone()
            if row is None or row["seq"] is None:
                self.conn.execute("CREATE SEQUENCE failed_messages_id_seq OWNED BY failed_messages.id")
                self.conn.execute(
                    "ALTER TABLE failed_messages ALTER COLUMN id SET DEFAULT nextval('failed_messages_id_seq')"
                )
                # Rows copied from SQLite/D1 keep their ids: start after them.
                self.conn.execute(
                    "SELECT setval('failed_messages_id_seq', "
                    "COALESCE((SELECT MAX(id) FROM failed_messages), 0) + 1, false)"
                )

    def close(self) -> None:
        self.conn.close()


def _delete_partition_rows(backend: _Backend, keys: list[str]) -> None:
    for i in range(0, len(keys), _IN_CHUNK):
        chunk = keys[i : i + _IN_CHUNK]
        backend.run(f"DELETE FROM r2_partitions WHERE object_key IN ({', '.join('?' * len(chunk))})", chunk)


def shut_down_socket(conn: Any) -> None:
    """Fail the call blocked on ``conn``: shut its socket down (through a duplicate of the descriptor,
    which shuts the one socket both name)."""
    with contextlib.suppress(OSError, ValueError), socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- public API


class MetaDB:
    """Thread-safe access to the metadata database.

    Create with :meth:`connect`.  Every method may be called from any thread (calls are
    serialised on one connection); every write is committed before the method returns.
    """

    def __init__(
        self,
        backend: _Backend,
        *,
        url: str,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        if payload_limit < MIN_PAYLOAD_LIMIT:
            raise ValueError(f"payload_limit must be >= {MIN_PAYLOAD_LIMIT}")
        self._b = backend
        self.retry_seconds = retry_seconds
        self._given_up = False  # the last call gave up on a lost connection
        self._resting_until = 0.0  # until then, calls fail at once
        self._lock = threading.RLock()
        self._closed = False
        self.url = _redact(url)
        self.payload_limit = payload_limit

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def connect(
        cls,
        url: str | os.PathLike[str],
        *,
        payload_limit: int = DEFAULT_PAYLOAD_LIMIT,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> MetaDB:
        """Open (creating if needed) the metadata DB and apply the schema idempotently.

        ``url``: ``sqlite:///abs/path.db``, ``sqlite:///:memory:``, a plain file path (parent
        directories are created), or ``postgresql://user@host:port/dbname`` (psycopg 3).
        ``busy_timeout`` (seconds) is how long SQLite waits for another process's write lock.
        PostgreSQL: a call unanswered for ``statement_timeout`` seconds loses its connection, and a call
        whose connection is lost connects again and tries again, with back-off, for ``retry_seconds``
        (an outage of the database or of the path to it holds the caller, it does not fail it).
        """
        url = os.fspath(url)
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        backend: _Backend
        if scheme in ("", "sqlite"):
            backend = _SQLiteBackend(_parse_sqlite_target(url), busy_timeout)
        elif scheme in ("postgresql", "postgres"):
            backend = _PostgresBackend(url, statement_timeout)
        else:
            raise ValueError(f"unsupported metadata DB URL scheme: {_redact(url)!r}")
        try:
            backend.apply_schema(schema_sql())
        except BaseException:
            backend.close()
            raise
        return cls(backend, url=url, payload_limit=payload_limit, retry_seconds=retry_seconds)

    @property
    def backend(self) -> str:
        """Backend name: ``"sqlite"`` or ``"postgresql"``."""
        return self._b.name

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._b.close()

    def __enter__(self) -> MetaDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MetaDB({self.url!r})"

    # ------------------------------------------------------------------ internals

    def _retrying(self, call: Callable[[_Backend], T]) -> T:
        """``call(backend)`` under the lock; when the connection is lost, again on a new one, with
        back-off, for up to :attr:`retry_seconds`. A call is one statement or one transaction, so
        trying it again is safe (upserts and deletes by key; a dead letter whose insert was committed
        just as the connection broke is the one exception: it may be stored twice). Once a call has
        given up, the next ones fail at once for a while (as long as the retry window, at most 30 s), then
        try once each until one succeeds: a crawl stopping because its database is gone stops in seconds,
        not in a retry window (or a timeout) per call."""
        self._raise_if_resting()
        deadline: float | None = None
        delay = _RETRY_FIRST_DELAY
        while True:
            with self._lock:
                try:
                    with self._b.deadline():
                        result = call(self._b)
                    self._given_up = False
                    return result
                except self._b.connection_errors as exc:
                    self._b.reset()
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now if self._given_up else now + self.retry_seconds
                    if now + delay > deadline:
                        self._given_up = True
                        self._resting_until = time.monotonic() + min(self.retry_seconds, _MAX_REST)
                        raise
                    logger.warning(
                        "the metadata DB %s is unreachable (%s); trying again in %.1f s", self.url, exc, delay
                    )
            time.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)

    def _raise_if_resting(self) -> None:
        if time.monotonic() < self._resting_until:
            raise MetaDBUnavailable(f"the metadata DB {self.url} is unreachable (a call just gave up on it)")

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self._retrying(lambda b: b.fetch(sql, params))

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._retrying(lambda b: b.run(sql, params))

    def _in_transaction(self, body: Callable[[_Backend], T]) -> T:
        """``body(backend)`` in one transaction, tried again whole if the connection is lost."""

        def call(backend: _Backend) -> T:
            with backend.transaction():
                return body(backend)

        return self._retrying(call)

    @contextmanager
    def exclusive(self, name: str) -> Iterator[None]:
        """Hold the lock ``name`` across processes and hosts (PostgreSQL advisory lock; SQLite's write
        lock) for a read-then-write that must not interleave with another worker's, such as rewriting a
        catalog from the partition table. Not retried (the caller's work is inside), but bounded like
        any call: a lost connection fails it, and the next call connects again."""
        self._raise_if_resting()
        with self._lock:
            try:
                with self._b.deadline(), self._b.exclusive(name):
                    yield
            except self._b.connection_errors:
                self._b.reset()
                raise

    # ------------------------------------------------------------------ runs

    def start_run(self, run_id: str, source: str, spider: str, args: dict[str, Any], host: str) -> None:
        """Record the start of a crawl.  ``args`` must already be stripped of secrets.

        Starting an existing ``run_id`` again (a resumed job) keeps its ``started_at``, updates
        source/spider/args/host and clears the finish fields.
        """
        self._run(
            "INSERT INTO ingestion_runs (run_id, source, spider, args, started_at, host) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id) DO UPDATE SET source = excluded.source, spider = excluded.spider, "
            "args = excluded.args, host = excluded.host, finished_at = NULL, finish_reason = NULL",
            (run_id, source, spider, _dumps(args or {}), utcnow(), host),
        )

    def finish_run(
        self,
        run_id: str,
        finish_reason: str,
        items: int,
        errors: int,
        dead_letters: int,
        bytes_written: int,
        stats: dict[str, Any],
    ) -> None:
        """Record the end of a crawl; ``stats`` is JSON-encoded (datetimes become ISO strings).

        Raises ``KeyError`` if ``start_run`` was never called for ``run_id``.
        """
        n = self._run(
            "UPDATE ingestion_runs SET finished_at = ?, finish_reason = ?, items = ?, errors = ?, "
            "dead_letters = ?, bytes_written = ?, stats = ? WHERE run_id = ?",
            (
                utcnow(),
                finish_reason,
                items,
                errors,
                dead_letters,
                bytes_written,
                _dumps(stats or {}),
                run_id,
            ),
        )
        if n == 0:
            raise KeyError(f"unknown run_id {run_id!r}")

    @staticmethod
    def _run_row(row: dict[str, Any]) -> dict[str, Any]:
        row["args"] = _loads(row["args"])
        row["stats"] = _loads(row["stats"])
        return row

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run as a dict (``args``/``stats`` decoded from JSON), or ``None``."""
        rows = self._fetch(f"SELECT {_RUN_COLUMNS} FROM ingestion_runs WHERE run_id = ?", (run_id,))
        return self._run_row(rows[0]) if rows else None

    def last_runs(self, source: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Most recent runs first, optionally for one source."""
        where, params = ("WHERE source = ? ", [source]) if source is not None else ("", [])
        rows = self._fetch(
            f"SELECT {_RUN_COLUMNS} FROM ingestion_runs {where}ORDER BY started_at DESC, run_id DESC LIMIT ?",
            (*params, int(limit)),
        )
        return [self._run_row(r) for r in rows]

    # ------------------------------------------------------------------ cursors / state

    def get_cursor(self, source: str, key: str = "default") -> str | None:
        """Saved cursor value (opaque string) for ``(source, key)``, or ``None``."""
        rows = self._fetch("SELECT cursor_value FROM sync_state WHERE source = ? AND cursor_key = ?", (source, key))
        return rows[0]["cursor_value"] if rows else None

    def save_cursor(self, source: str, value: str, key: str = "default", run_id: str | None = None) -> None:
        """Upsert the cursor; committed (durable against a process crash) when this returns."""
        if not isinstance(value, str):
            raise TypeError(f"cursor values are opaque strings, got {type(value).__name__}")
        self._run(SAVE_CURSOR_SQL, (source, key, value, utcnow(), run_id))

    def delete_cursor(self, source: str, key: str = "default") -> bool:
        """Forget a cursor/state key; returns whether it existed."""
        return self._run("DELETE FROM sync_state WHERE source = ? AND cursor_key = ?", (source, key)) > 0

    def cursors(self, source: str | None = None) -> list[dict[str, Any]]:
        """All ``sync_state`` rows (optionally of one source), ordered by source and key."""
        where, params = ("WHERE source = ? ", (source,)) if source is not None else ("", ())
        rows = self._fetch(
            f"SELECT source, cursor_key, cursor_value, updated_at, run_id FROM sync_state {where}", params
        )
        return sorted(rows, key=lambda r: (r["source"], r["cursor_key"]))

    # ------------------------------------------------------------------ dead letters

    def add_failed(
        self,
        source: str,
        reason: str,
        *,
        url: str | None = None,
        payload: bytes | str | None = None,
        run_id: str | None = None,
        attempts: int = 1,
    ) -> int:
        """Store a dead letter and return its id.  ``payload`` is kept as a bounded text sample
        (:attr:`payload_limit` chars, truncation marked, see :func:`payload_sample`)."""
        sample = payload_sample(payload, self.payload_limit)
        return self._retrying(
            lambda b: b.insert_id(
                "INSERT INTO failed_messages "
                "(source, run_id, reason, url, payload_sample, attempts, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (source, run_id, _clean_text(str(reason)), url, sample, attempts, utcnow()),
            )
        )

    def failed(
        self, source: str | None = None, *, include_replayed: bool = False, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Dead letters, oldest first; replayed ones only when ``include_replayed``."""
        conds, params = self._failed_filter(source=source, include_replayed=include_replayed)
        return self._fetch(
            f"SELECT {_FAILED_COLUMNS} FROM failed_messages {conds}ORDER BY id LIMIT ?", (*params, int(limit))
        )

    def count_failed(
        self, source: str | None = None, run_id: str | None = None, *, include_replayed: bool = True
    ) -> int:
        """Number of dead letters matching ``source``/``run_id`` (``None`` = any)."""
        conds, params = self._failed_filter(source=source, run_id=run_id, include_replayed=include_replayed)
        return int(self._fetch(f"SELECT COUNT(*) AS n FROM failed_messages {conds}", params)[0]["n"])

    def count_failed_by_reason(self, source: str | None = None, *, include_replayed: bool = False) -> dict[str, int]:
        """Number of dead letters per reason (waiting ones only unless ``include_replayed``), counted in SQL."""
        conds, params = self._failed_filter(source=source, include_replayed=include_replayed)
        rows = self._fetch(f"SELECT reason, COUNT(*) AS n FROM failed_messages {conds}GROUP BY reason", params)
        return {row["reason"]: int(row["n"]) for row in rows}

    def mark_replayed(self, ids: Iterable[int], replayed_at: str | None = None) -> int:
        """Set ``replayed_at`` on the given dead letters; returns how many rows changed."""
        ids = list(ids)
        when = replayed_at or utcnow()

        def mark(b: _Backend) -> int:
            changed = 0
            for i in range(0, len(ids), _IN_CHUNK):
                chunk = ids[i : i + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                changed += b.run(f"UPDATE failed_messages SET replayed_at = ? WHERE id IN ({marks})", (when, *chunk))
            return changed

        return self._in_transaction(mark)

    @staticmethod
    def _failed_filter(
        *, source: str | None = None, run_id: str | None = None, include_replayed: bool = True
    ) -> tuple[str, list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        if source is not None:
            conds.append("source = ?")
            params.append(source)
        if run_id is not None:
            conds.append("run_id = ?")
            params.append(run_id)
        if not include_replayed:
            conds.append("replayed_at IS NULL")
        return ("WHERE " + " AND ".join(conds) + " " if conds else ""), params

    # ------------------------------------------------------------------ partitions

    def add_partitions(self, rows: list[PartitionRow]) -> None:
        """Upsert partition rows by ``object_key`` in one transaction (all or nothing)."""
        self.replace_partitions(rows, [])

    def replace_partitions(self, rows: list[PartitionRow], removed: list[str]) -> None:
        """Upsert ``rows`` and delete the rows of the ``removed`` object keys, in one transaction: a reader
        of the index sees the old set of files or the new one (a compaction's swap), never both or neither."""
        removed = [key for key in removed if key not in {row.object_key for row in rows}]
        if not rows and not removed:
            return
        now = utcnow()
        values = [r.as_tuple() if r.created_at else dataclasses.replace(r, created_at=now).as_tuple() for r in rows]
        cols = PartitionRow.COLUMNS
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "object_key")
        sql = (
            f"INSERT INTO r2_partitions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            f"ON CONFLICT (object_key) DO UPDATE SET {updates}"
        )

        def replace(b: _Backend) -> None:
            if values:
                b.run_many(sql, values)
            _delete_partition_rows(b, removed)

        self._in_transaction(replace)

    def partitions(
        self, namespace: str, *, year: int | None = None, month: int | None = None, day: int | None = None
    ) -> list[PartitionRow]:
        """Partition rows of ``namespace``, optionally narrowed by date parts, ordered by
        (year, month, day, object_key)."""
        conds = ["namespace = ?"]
        params: list[Any] = [namespace]
        for col, val in (("year", year), ("month", month), ("day", day)):
            if val is not None:
                conds.append(f"{col} = ?")
                params.append(val)
        rows = self._fetch(
            f"SELECT {', '.join(PartitionRow.COLUMNS)} FROM r2_partitions WHERE {' AND '.join(conds)}", params
        )
        out = [PartitionRow(**r) for r in rows]
        # Sorted here rather than in SQL: identical (byte-wise) order on every backend/collation.
        out.sort(key=lambda p: (p.year, p.month, p.day, p.object_key))
        return out

    def partition_totals(self, namespace: str, *, ingested_since: str | None = None) -> dict[str, int]:
        """``objects``, ``records`` (Parquet files only: NDJSON twins hold the same records) and ``bytes`` (every
        object) of ``namespace``, summed in SQL. With ``ingested_since`` (ISO-8601 UTC, written as the index
        writes it) only the objects whose oldest record was ingested then or later."""
        since = "AND min_ingested_at >= ? " if ingested_since is not None else ""
        params = [namespace] if ingested_since is None else [namespace, ingested_since]
        row = self._fetch(
            "SELECT COUNT(*) AS objects, "
            "COALESCE(SUM(CASE WHEN format = 'parquet' THEN records ELSE 0 END), 0) AS records, "
            f"COALESCE(SUM(bytes), 0) AS bytes FROM r2_partitions WHERE namespace = ? {since}",
            params,
        )[0]
        return {name: int(row[name]) for name in ("objects", "records", "bytes")}

    def delete_partitions(self, keys: list[str]) -> None:
        """Delete partition rows by object key (unknown keys are ignored), in one transaction."""
        self.replace_partitions([], keys)
