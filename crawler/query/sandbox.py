"""Read-only SQL over the platform's data for callers that are not trusted with the machine.

``SafeQueryEngine(store).run("SELECT …")`` runs one SELECT over the views of
:func:`crawler.query.views.connect` and nothing else. The defences, outermost first:

1. **Statement check** (:func:`check_sql`): DuckDB's own parser must find exactly one statement of
   type SELECT. Its syntax tree (``json_serialize_sql``) is then walked: table functions must be on
   a short allow-list (no ``read_*``, ``glob``, ``query``, …), a few scalar functions that read
   settings or take SQL in a string are refused, and table names that look like paths or URLs
   (``FROM '/etc/passwd'``) are refused. This gives clear "not allowed" answers; it is not the wall.
2. **DuckDB lockdown** (:func:`lock_down`), the wall: an in-memory connection with
   ``enable_external_access = false`` (no file, network, extension or replacement-scan access)
   except ``allowed_paths`` = exactly the Parquet files behind the views, no extension
   auto-install/auto-load, no spilling to disk, a memory limit, a thread count, an execution-time
   limit, and finally ``lock_configuration = true`` so no statement can undo any of it. A process
   keeps its locked connections between queries (Parquet metadata stays cached) for as long as the
   partition index names the same files; when it changes, the next query gets a new connection.
3. **Time and size**: a timer calls ``connection.interrupt()`` after ``timeout`` seconds, results
   are fetched with ``fetchmany(row_cap + 1)`` and capped in bytes.
4. **Process isolation** (``isolation="process"``, the default): queries run in a small pool of
   worker processes with an address-space limit (``RLIMIT_AS``). Some DuckDB functions allocate
   outside the memory limit and cannot be interrupted (``SELECT len(range(300000000))`` builds a
   15 GB list in one call); in a worker such a query fails with "out of memory" instead of taking
   the server down, and a worker that does not answer by the deadline is killed and replaced.
   The workers get the environment without the API's own ``QUERY_API_*`` variables and answer in
   JSON, never pickle, so even a compromised worker cannot run code in the server.

``isolation="thread"`` runs the same locked-down connection in the calling thread: layers 1-3
only, for trusted callers and tests.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import decimal
import json
import logging
import math
import os
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

import duckdb
import orjson

from crawler.config import IcebergConfig
from crawler.query.views import NamespaceIndex, connect, read_indexes
from crawler.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from crawler.storage.iceberg import IcebergTables

__all__ = [
    "ALLOWED_TABLE_FUNCTIONS",
    "DENIED_FUNCTIONS",
    "DENIED_TABLES",
    "Limits",
    "QueryBusy",
    "QueryError",
    "QueryFailed",
    "QueryRejected",
    "QueryResult",
    "QueryTimeout",
    "SafeQueryEngine",
    "check_sql",
    "lock_down",
    "worker_main",
]

logger = logging.getLogger(__name__)

# Table functions are where DuckDB reads files (read_csv, read_text, glob, parquet_*), runs SQL
# given as a string (query, query_table, json_execute_serialized_sql) or changes state
# (enable_logging, checkpoint, *_external_resource). New versions keep adding some, so this is
# an allow-list of the side-effect-free ones people need for exploring and generating data.
ALLOWED_TABLE_FUNCTIONS = frozenset(
    {
        "range",
        "generate_series",
        "unnest",
        "json_each",
        "json_tree",
        "duckdb_tables",
        "duckdb_columns",
        "duckdb_schemas",
        "duckdb_types",
        "duckdb_functions",
        "duckdb_keywords",
        "pragma_table_info",
    }
)
# Scalar functions that leak configuration (current_setting: http_proxy comes from HTTP_PROXY and
# may hold credentials; secret_directory reveals $HOME), bind SQL given as a string past this
# check (json_serialize_plan), write somewhere (write_log), or read the environment (getenv: CLI
# only today, refused in case a build brings it).
DENIED_FUNCTIONS = frozenset({"current_setting", "getenv", "json_serialize_plan", "write_log"})
# Built-in views over the functions above, and the catalog views that show a view's SQL: ours name the
# server's absolute paths of the data files (duckdb_views() is off the allow-list for the same reason).
DENIED_TABLES = frozenset(
    {
        "pg_settings",
        "duckdb_settings",
        "duckdb_logs",
        "duckdb_secrets",
        "duckdb_views",
        "sqlite_master",
        "sqlite_schema",
        "sqlite_temp_master",
        "sqlite_temp_schema",
        "pg_views",
        "views",  # information_schema.views (view_definition)
    }
)
# Our views are plain identifiers; a table name with any of these is DuckDB's replacement scan of
# a file or URL ('/etc/passwd', 'x.csv', 's3://…', 'data/*.parquet').
_PATH_LIKE = re.compile(r"[./\\:*?~]")

_FRAME = struct.Struct(">I")
_WORKER_ENV_DROP = ("QUERY_API_",)  # the API's keys and settings: nothing a worker needs


# -- results and errors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]  # JSON-ready values (see _json_value)
    truncated: bool
    elapsed_ms: float

    @property
    def row_count(self) -> int:
        return len(self.rows)


class QueryError(Exception):
    """Base of the errors of :meth:`SafeQueryEngine.run`; ``message`` is safe to show the caller."""

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class QueryRejected(QueryError):
    """The statement is not allowed (not a single SELECT, a file read, a setting, …)."""

    kind = "rejected"

    @property
    def reason(self) -> str:
        return self.message


class QueryFailed(QueryError):
    """The SELECT is allowed but failed: SQL error, out of memory, worker lost."""

    kind = "failed"


class QueryTimeout(QueryFailed):
    """Cut off after the timeout."""

    kind = "timeout"


class QueryBusy(QueryFailed):
    """Every worker stayed busy for as long as the caller may wait."""

    kind = "busy"


_ERRORS: dict[str, type[QueryError]] = {cls.kind: cls for cls in (QueryRejected, QueryFailed, QueryTimeout, QueryBusy)}


@dataclass(frozen=True)
class Limits:
    row_cap: int = 10_000
    timeout: float = 10.0
    memory_limit_mb: int = 1024  # DuckDB's buffer manager, per query
    threads: int = 2
    max_result_bytes: int = 64 * 1024 * 1024  # JSON size of the rows; beyond it rows are cut off

    def __post_init__(self) -> None:
        if self.row_cap < 1 or self.timeout <= 0 or self.memory_limit_mb < 64 or self.threads < 1:
            raise ValueError(f"invalid query limits: {self}")


# -- layer 1: the statement check ------------------------------------------------------------------


def check_sql(sql: str, con: duckdb.DuckDBPyConnection | None = None) -> duckdb.Statement:
    """Return the single SELECT statement of ``sql``; raise :class:`QueryRejected` or :class:`QueryFailed`.

    ``con`` is only used to call ``json_serialize_sql`` (a pure parser function); without it a
    per-thread connection with no data is used (opening one costs tens of milliseconds).
    """
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRejected("empty query: send one SELECT statement")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.ParserException as exc:
        raise QueryFailed(_first_line(exc)) from None
    except Exception as exc:  # anything the parser cannot classify is not a plain SELECT
        raise QueryRejected(f"statement not allowed: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryRejected(f"exactly one statement is allowed, got {len(statements)}")
    statement = statements[0]
    try:
        kind = statement.type
    except ValueError:  # a statement type newer than the Python enum (UPDATE EXTENSIONS)
        raise QueryRejected("only SELECT is allowed") from None
    if kind != duckdb.StatementType.SELECT:
        raise QueryRejected(f"only SELECT is allowed, not {kind.name}")
    try:
        serialized = (con or _parser()).execute("SELECT json_serialize_sql(?)", [statement.query]).fetchone()
    except duckdb.Error as exc:
        raise QueryRejected(f"query could not be analysed: {_first_line(exc)}") from None
    tree = json.loads(serialized[0]) if serialized else {"error": True}
    if tree.get("error") or len(tree.get("statements", ())) != 1:
        raise QueryRejected(f"query could not be analysed: {tree.get('error_message', 'no statement')}")
    _check_tree(tree["statements"][0])
    return statement


_local = threading.local()


def _parser() -> duckdb.DuckDBPyConnection:
    con = getattr(_local, "parser", None)
    if con is None:
        # Only ever runs json_serialize_sql(?), but locked like the others all the same.
        con = duckdb.connect(":memory:")
        lock_down(con, allowed_paths=(), limits=Limits(timeout=5.0, memory_limit_mb=64, threads=1))
        _local.parser = con
    return con


def _check_tree(node: Any) -> None:
    # The JSON tree of a SELECT; iterative, since a hostile query can nest thousands deep.
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
            continue
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "TABLE_FUNCTION":
            name = str((item.get("function") or {}).get("function_name", "")).lower()
            if name not in ALLOWED_TABLE_FUNCTIONS:
                raise QueryRejected(f"table function {name}() is not allowed: query the views instead")
        elif kind in ("BASE_TABLE", "SHOW_REF"):
            for part in ("catalog_name", "schema_name", "table_name"):
                value = str(item.get(part) or "")
                if _PATH_LIKE.search(value):
                    raise QueryRejected(f"{value!r} is not a table: files and URLs cannot be read")
            if str(item.get("table_name") or "").lower() in DENIED_TABLES:
                raise QueryRejected(f"{item['table_name']} is not allowed")
        if item.get("class") in ("FUNCTION", "WINDOW"):
            name = str(item.get("function_name", "")).lower()
            if name in DENIED_FUNCTIONS:
                raise QueryRejected(f"function {name}() is not allowed")
        stack.extend(item.values())


# -- layer 2: the DuckDB lockdown ------------------------------------------------------------------


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def view_files(store: ObjectStore, indexes: dict[str, NamespaceIndex] | None = None) -> list[str]:
    """The local files the views read (empty for remote stores, whose views are Arrow datasets)."""
    indexes = read_indexes(store) if indexes is None else indexes
    files: list[str] = []
    for index in indexes.values():
        for file in index.files:
            path = store.local_path(file.key)
            if path is not None:
                files.append(path)
    return files


def lock_down(con: duckdb.DuckDBPyConnection, *, allowed_paths: Iterable[str], limits: Limits) -> None:
    """Apply the settings that make ``con`` read only the given files, then lock its configuration."""
    paths = ", ".join(_sql_string(path) for path in allowed_paths)
    settings = [
        # The only files DuckDB may still open once external access is off: the views' own Parquet
        # files, by exact path (allowed_directories would also expose NDJSON, catalogs, meta.db).
        f"SET allowed_paths = [{paths}]",
        # No spilling: a read API writes nothing to disk; a query over the memory limit fails.
        "SET temp_directory = ''",
        f"SET memory_limit = '{int(limits.memory_limit_mb)}MB'",
        f"SET threads = {int(limits.threads)}",
        # DuckDB's own clock, a second line behind the interrupt timer.
        f"SET max_execution_time = {max(1, int(limits.timeout * 1000))}",
        # Extensions could bring file systems (httpfs) or anything else: none may be fetched or loaded.
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",
        "SET allow_unsigned_extensions = false",
        "SET allow_extension_repositories = 'forbidden'",
        # No secrets read from or written to ~/.duckdb.
        "SET allow_persistent_secrets = false",
        # A bare name must never resolve to a Python variable of this process.
        "SET python_enable_replacements = false",
        # DuckDB copies HTTP_PROXY (credentials included) into a setting; it makes no HTTP requests here.
        "SET http_proxy = ''",
        "SET http_proxy_username = ''",
        "SET http_proxy_password = ''",
        "SET enable_progress_bar = false",
        # The wall: no file, network or extension access, COPY, ATTACH, replacement scans of files.
        "SET enable_external_access = false",
        # Last: no later SET/RESET/PRAGMA (nor enable_logging(), enable_profiling(), …) may change any of this.
        "SET lock_configuration = true",
    ]
    for statement in settings:
        con.execute(statement)
    locked = dict(
        con.execute(
            "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration')"
        ).fetchall()
    )
    if locked != {"enable_external_access": "false", "lock_configuration": "true"}:
        raise RuntimeError(f"DuckDB lockdown did not take effect: {locked}")


def open_locked(
    store: ObjectStore, limits: Limits, indexes: dict[str, NamespaceIndex] | None = None
) -> duckdb.DuckDBPyConnection:
    """A fresh connection with the views of ``store`` (over the files of ``indexes``), locked down."""
    indexes = read_indexes(store) if indexes is None else indexes
    files = view_files(store, indexes)
    con = connect(store, indexes=indexes)
    try:
        lock_down(con, allowed_paths=files, limits=limits)
    except BaseException:
        con.close()
        raise
    return con


# -- layer 3: execution with timeout and caps ------------------------------------------------------


class _Connections:
    """Locked connections kept between queries, each with the partition index its views were built from.

    A connection is taken by one query at a time; it is given back only after a query that went well,
    and only while the index still names the same files (a new batch, a compaction: a new connection)."""

    def __init__(self, keep: int = 4) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[tuple[str, Limits], dict[str, NamespaceIndex], duckdb.DuckDBPyConnection]] = []
        self._keep = keep

    def take(self, store: ObjectStore, limits: Limits, indexes: dict[str, NamespaceIndex]) -> duckdb.DuckDBPyConnection:
        owner = (store.uri, limits)
        stale = []
        found = None
        with self._lock:
            for entry in list(self._idle):
                if entry[0] == owner and entry[1] == indexes and found is None:
                    found = entry[2]
                    self._idle.remove(entry)
                elif entry[0] == owner and entry[1] != indexes:
                    stale.append(entry[2])
                    self._idle.remove(entry)
        for con in stale:
            con.close()
        if found is not None:
            return found
        try:
            return open_locked(store, limits, indexes)
        except duckdb.Error as exc:
            raise QueryFailed(f"the data could not be opened: {_first_line(exc)}") from None

    def give(
        self, store: ObjectStore, limits: Limits, indexes: dict[str, NamespaceIndex], con: duckdb.DuckDBPyConnection
    ) -> None:
        with self._lock:
            self._idle.append(((store.uri, limits), indexes, con))
            dropped = self._idle[: -self._keep]
            del self._idle[: -self._keep]
        for _, _, old in dropped:
            old.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for _, _, con in idle:
            con.close()


_connections = _Connections()


def execute(store: ObjectStore, sql: str, limits: Limits, tables: IcebergTables | None = None) -> dict[str, Any]:
    """Check and run ``sql`` on a locked connection over the files the partition index names now (with
    ``tables``: the current snapshots of the Iceberg tables); return the JSON-ready result payload.

    A query that fails while the index changes under it (a compaction deleted a file it was reading)
    is run once more over the new index."""
    for attempt in (1, 2):
        indexes = _indexes(store, tables)
        con = _connections.take(store, limits, indexes)
        try:
            statement = check_sql(sql, con)
            result = _execute_locked(con, statement, limits)
        except (QueryFailed, QueryRejected) as exc:
            con.close()
            # a file the views read is gone (DuckDB says so as an I/O or a permission error)
            if attempt == 1 and not isinstance(exc, QueryTimeout | QueryBusy) and _indexes(store, tables) != indexes:
                continue
            raise
        except BaseException:
            con.close()
            raise
        _connections.give(store, limits, indexes, con)
        return result
    raise AssertionError("unreachable")


def _indexes(store: ObjectStore, tables: IcebergTables | None) -> dict[str, NamespaceIndex]:
    if tables is None:
        return read_indexes(store)
    with tables.lock:  # one PyIceberg catalog client, shared by the query threads
        return read_indexes(store, tables=tables)


def _open_tables(iceberg: dict[str, Any] | None, store: ObjectStore) -> IcebergTables | None:
    """The Iceberg tables named by an init frame's ``iceberg`` (:meth:`IcebergConfig.catalog_fields`)."""
    if iceberg is None:
        return None
    from crawler.storage.iceberg import open_tables

    return open_tables(IcebergConfig(enabled=True, **iceberg), store)


def _execute_locked(con: duckdb.DuckDBPyConnection, statement: duckdb.Statement, limits: Limits) -> dict[str, Any]:
    fired = threading.Event()

    def cut_off() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(limits.timeout, cut_off)
    timer.daemon = True
    started = time.perf_counter()
    timer.start()
    try:
        cursor = con.execute(statement)
        description = cursor.description or []
        raw = cursor.fetchmany(limits.row_cap + 1)
    except duckdb.InterruptException:
        raise QueryTimeout(f"query cut off after {limits.timeout:g} s") from None
    except duckdb.PermissionException as exc:
        raise QueryRejected(_first_line(exc)) from None
    except duckdb.OutOfMemoryException as exc:
        raise QueryFailed(f"out of memory: {_first_line(exc)}") from None
    except duckdb.Error as exc:
        if fired.is_set():
            raise QueryTimeout(f"query cut off after {limits.timeout:g} s") from None
        raise QueryFailed(_first_line(exc)) from None
    except MemoryError:
        raise QueryFailed("out of memory while fetching the result") from None
    finally:
        timer.cancel()
    elapsed_ms = (time.perf_counter() - started) * 1000
    truncated = len(raw) > limits.row_cap
    rows: list[list[Any]] = []
    size = 0
    for row in raw[: limits.row_cap]:
        value = [_json_value(cell) for cell in row]
        size += len(orjson.dumps(value))
        if size > limits.max_result_bytes:
            truncated = True
            break
        rows.append(value)
    return {
        "columns": [str(d[0]) for d in description],
        "types": [str(d[1]) for d in description],
        "rows": rows,
        "truncated": truncated,
        "elapsed_ms": round(elapsed_ms, 3),
    }


_INT64 = 2**63


def _json_value(value: Any) -> Any:
    """A DuckDB value as JSON: exact numbers and timestamps as strings, bytes as base64."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)  # HUGEINT beyond JSON readers' range
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # JSON has no NaN/Infinity
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _result(payload: dict[str, Any]) -> QueryResult:
    return QueryResult(
        columns=list(payload["columns"]),
        types=list(payload["types"]),
        rows=list(payload["rows"]),
        truncated=bool(payload["truncated"]),
        elapsed_ms=float(payload["elapsed_ms"]),
    )


# -- layer 4: worker processes ---------------------------------------------------------------------


class _WorkerLost(Exception):
    pass


class _WorkerLate(Exception):
    pass


def _write_frame(stream: BinaryIO, payload: dict[str, Any]) -> None:
    data = orjson.dumps(payload)
    stream.write(_FRAME.pack(len(data)) + data)
    stream.flush()


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _WorkerLate()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise _WorkerLate()
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise _WorkerLost()
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int, deadline: float | None, max_bytes: int) -> dict[str, Any]:
    (size,) = _FRAME.unpack(_read_exact(fd, _FRAME.size, deadline))
    if size > max_bytes:
        raise _WorkerLost()  # a worker never sends this much: treat it as broken
    try:
        payload = orjson.loads(_read_exact(fd, size, deadline))
    except orjson.JSONDecodeError:
        raise _WorkerLost() from None
    if not isinstance(payload, dict):
        raise _WorkerLost()
    return payload


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_WORKER_ENV_DROP)}
    # The worker imports this package; make sure it finds the same copy whatever the cwd.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


class _Worker:
    def __init__(
        self,
        store_uri: str,
        limits: Limits,
        headroom_mb: int,
        start_timeout: float,
        iceberg: dict[str, Any] | None = None,
    ) -> None:
        self.uses = 0
        self.process = subprocess.Popen(
            [sys.executable, "-B", "-c", "from crawler.query.sandbox import worker_main; worker_main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_worker_env(),
            # Own session: a Ctrl-C in the server's terminal is for the server, which then stops its workers.
            start_new_session=True,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._stdin = self.process.stdin
        self._stdout = self.process.stdout.fileno()
        self._max_frame = limits.max_result_bytes * 2 + (1 << 20)
        try:
            init = {"store_uri": store_uri, "limits": asdict(limits), "headroom_mb": headroom_mb, "iceberg": iceberg}
            _write_frame(self._stdin, init)
            hello = _read_frame(self._stdout, time.monotonic() + start_timeout, self._max_frame)
        except (OSError, _WorkerLost, _WorkerLate):
            self.kill()
            raise RuntimeError("query worker did not start (see its error output above)") from None
        if "error" in hello:
            self.kill()
            raise RuntimeError(f"query worker did not start: {hello['error']}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def request(self, sql: str, deadline: float) -> dict[str, Any]:
        self.uses += 1
        try:
            _write_frame(self._stdin, {"sql": sql})
        except OSError:
            raise _WorkerLost() from None
        return _read_frame(self._stdout, deadline, self._max_frame)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        with contextlib.suppress(OSError):
            self._stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.process.stdout.close()  # type: ignore[union-attr]

    def stop(self) -> None:
        # Closing stdin ends the worker's loop; kill() only if it does not go.
        with contextlib.suppress(OSError):
            self._stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        self.kill()


class _WorkerPool:
    """``size`` workers; a request takes an idle one, a lost or late one is killed and replaced."""

    def __init__(
        self,
        store_uri: str,
        limits: Limits,
        *,
        size: int,
        headroom_mb: int,
        grace: float,
        recycle_after: int,
        start_timeout: float = 60.0,
        iceberg: dict[str, Any] | None = None,
    ) -> None:
        self._spawn_args = (store_uri, limits, headroom_mb, start_timeout, iceberg)
        self._limits = limits
        self._grace = grace
        self._recycle_after = recycle_after
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._workers: set[_Worker] = set()
        self._closed = False
        self.restarts = 0
        try:
            for _ in range(size):
                self._add(_Worker(*self._spawn_args))
        except BaseException:
            self.close()
            raise

    def _add(self, worker: _Worker) -> None:
        with self._lock:
            if self._closed:
                worker.stop()
                return
            self._workers.add(worker)
        self._idle.put(worker)

    def _replace(self, worker: _Worker, *, kill: bool) -> None:
        if kill:
            worker.kill()
        else:
            worker.stop()
        with self._lock:
            self._workers.discard(worker)
            if self._closed:
                return
            self.restarts += 1
        # Starting a worker takes a moment (imports); the caller does not wait for it.
        threading.Thread(target=self._respawn, name="query-worker-respawn", daemon=True).start()

    def _respawn(self) -> None:
        delay = 0.5
        while not self._closed:
            try:
                self._add(_Worker(*self._spawn_args))
                return
            except Exception:
                logger.exception("could not start a query worker; retrying in %.1f s", delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def _take(self, wait: float) -> _Worker:
        until = time.monotonic() + wait
        while True:
            try:
                worker = self._idle.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                raise QueryBusy("all query workers are busy; try again shortly") from None
            if worker.alive():
                return worker
            logger.warning("query worker %d had exited (code %s); replacing it", worker.pid, worker.process.poll())
            self._replace(worker, kill=True)

    def run(self, sql: str, wait: float) -> dict[str, Any]:
        worker = self._take(wait)
        deadline = time.monotonic() + self._limits.timeout + self._grace
        try:
            response = worker.request(sql, deadline)
        except _WorkerLate:
            logger.warning("query worker %d missed its deadline; killing it", worker.pid)
            self._replace(worker, kill=True)
            raise QueryTimeout(f"query cut off after {self._limits.timeout:g} s") from None
        except _WorkerLost:
            code = worker.process.poll()
            logger.warning("query worker %d died (exit code %s); replacing it", worker.pid, code)
            self._replace(worker, kill=True)
            raise QueryFailed("the query ran out of resources and was stopped") from None
        if worker.uses >= self._recycle_after:
            self._replace(worker, kill=False)
        else:
            self._idle.put(worker)
        return response

    def status(self) -> dict[str, int]:
        with self._lock:
            alive = sum(1 for w in self._workers if w.alive())
            return {
                "workers": len(self._workers),
                "alive": alive,
                "idle": self._idle.qsize(),
                "restarts": self.restarts,
            }

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = list(self._workers)
            self._workers.clear()
        for worker in workers:
            worker.stop()


def worker_main() -> None:
    """The loop of a worker process: one init frame, then one request frame per query."""
    # Frames go over the original stdout; anything else that prints (a library, DuckDB) goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stdin = sys.stdin.buffer.fileno()
    try:
        init = _read_frame(stdin, None, 1 << 20)
        limits = Limits(**init["limits"])
        store = open_store(init["store_uri"])
        tables = _open_tables(init.get("iceberg"), store)
        # Warm up (S3 client, DuckDB, pyarrow) before the limit, so only query work counts against it.
        execute(store, "SELECT 1", limits, tables)
        _limit_address_space(int(init["headroom_mb"]))
    except Exception as exc:
        _write_frame(out, {"error": f"{type(exc).__name__}: {_first_line(exc)}"})
        return
    _write_frame(out, {"ready": True, "pid": os.getpid()})
    max_request = 16 * 1024 * 1024
    while True:
        try:
            request = _read_frame(stdin, None, max_request)
        except (_WorkerLost, OSError):
            return  # the server closed the pipe: stop
        try:
            response: dict[str, Any] = {"ok": execute(store, str(request.get("sql", "")), limits, tables)}
        except QueryError as exc:
            response = {"error": exc.kind, "message": exc.message}
        except MemoryError:
            response = {"error": "failed", "message": "out of memory"}
        except Exception as exc:  # a bug here must not kill the worker silently
            logger.exception("query worker error")
            response = {"error": "failed", "message": f"internal error: {type(exc).__name__}"}
        try:
            _write_frame(out, response)
        except MemoryError:
            _write_frame(out, {"error": "failed", "message": "out of memory while sending the result"})


def _limit_address_space(headroom_mb: int) -> None:
    import resource

    # No core dumps: they would hold query data and the environment.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if headroom_mb <= 0:
        return
    # The limit is relative to what the warmed-up worker already maps (DuckDB, pyarrow and glibc
    # reserve a lot of virtual memory that is never touched), so it bounds what a query can add.
    size = _vm_size() + headroom_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size, size))


def _vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("cannot read VmSize")


# -- the engine ------------------------------------------------------------------------------------


class SafeQueryEngine:
    """Run untrusted SELECTs over the platform's views. Thread-safe.

    ``isolation="process"`` (default) keeps ``workers`` worker processes, each with
    ``worker_memory_mb`` of address space above its idle size; ``"thread"`` runs queries in the
    calling thread, at most ``workers`` at a time. ``queue_wait`` is how long :meth:`run` waits for
    a free slot before :class:`QueryBusy` (default: the timeout).
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        row_cap: int = 10_000,
        timeout: float = 10.0,
        memory_limit_mb: int = 1024,
        threads: int = 2,
        max_result_bytes: int = 64 * 1024 * 1024,
        isolation: Literal["process", "thread"] = "process",
        workers: int = 2,
        worker_memory_mb: int = 3072,
        queue_wait: float | None = None,
        kill_grace: float = 5.0,
        recycle_after: int = 500,
        iceberg: IcebergConfig | None = None,
    ) -> None:
        if isolation not in ("process", "thread"):
            raise ValueError(f"isolation must be 'process' or 'thread', not {isolation!r}")
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.store = store
        self.limits = Limits(row_cap, timeout, memory_limit_mb, threads, max_result_bytes)
        self.isolation = isolation
        self.queue_wait = timeout if queue_wait is None else queue_wait
        self._slots = threading.BoundedSemaphore(workers)
        self._pool: _WorkerPool | None = None
        #: the views read the Iceberg tables' current snapshots (QUERY_ICEBERG)
        iceberg_fields = iceberg.catalog_fields() if iceberg is not None else None
        self.tables = _open_tables(iceberg_fields, store) if isolation == "thread" else None
        if isolation == "process":
            self._pool = _WorkerPool(
                store.uri,
                self.limits,
                size=workers,
                headroom_mb=worker_memory_mb,
                grace=kill_grace,
                recycle_after=recycle_after,
                iceberg=iceberg_fields,
            )

    @property
    def row_cap(self) -> int:
        return self.limits.row_cap

    @property
    def timeout(self) -> float:
        return self.limits.timeout

    def run(self, sql: str) -> QueryResult:
        """Run one SELECT; raise :class:`QueryRejected`, :class:`QueryFailed` (:class:`QueryTimeout`, …)."""
        check_sql(sql)  # cheap, and refused queries never reach a worker
        if self._pool is None:
            if not self._slots.acquire(timeout=self.queue_wait):
                raise QueryBusy("all query slots are busy; try again shortly")
            try:
                return _result(execute(self.store, sql, self.limits, self.tables))
            finally:
                self._slots.release()
        response = self._pool.run(sql, self.queue_wait)
        if "ok" in response:
            return _result(response["ok"])
        error = _ERRORS.get(str(response.get("error")), QueryFailed)
        raise error(str(response.get("message", "query failed")))

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = {"isolation": self.isolation}
        if self._pool is not None:
            status.update(self._pool.status())
        return status

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> SafeQueryEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
