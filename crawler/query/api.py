"""The read-only SQL API over HTTP (FastAPI): ``scrapy serve`` runs it.

Routes (every one but ``/health``, the OpenAPI document and ``/docs`` included, needs an API key):

* ``POST /query`` ``{"sql": "SELECT …"}`` → ``{"columns", "types", "rows", "row_count", "truncated", "elapsed_ms"}``;
  400 not allowed, 422 SQL error, 503 busy, 504 timeout (see :mod:`crawler.query.sandbox`);
* ``GET /namespaces``: each namespace with its tables, primary key and record count (from its catalog);
* ``GET /catalog/{namespace}``: the stored ``<namespace>/_metadata/catalog.json`` (``namespace`` may hold ``/``);
* ``GET /health``: ``{"status": "ok"}`` (or 503 ``degraded``) for load balancers, without a key; with a
  key it adds the query workers' state;
* ``GET /docs`` (Swagger UI served from the package, no CDN: it works offline), ``GET /openapi.json``;
* ``GET /``: the status dashboard (HTML with SVG plots, :mod:`crawler.dashboard`), from the metadata DB
  and the catalogs.

Every error answers ``{"error": <kind>, "detail": <text>}``: unknown routes and methods, bad request
bodies and query errors alike.

A key is sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``; browsers opening
``/docs`` or the dashboard are asked for it by HTTP Basic authentication (any user name, the key as password).
Keys come from ``QUERY_API_KEYS`` (comma-separated). Without one the app refuses to start unless
``QUERY_API_ALLOW_NO_AUTH=true`` (``scrapy serve --insecure-no-auth``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from scrapy.settings import BaseSettings
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from crawler.config import IcebergConfig, IngestionConfig, default_meta_db_url
from crawler.items import Record
from crawler.pipelines.index import catalog_key
from crawler.query.sandbox import (
    QueryBusy,
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    SafeQueryEngine,
)
from crawler.storage import ObjectStore, open_store

__all__ = ["ApiConfig", "ApiKeyMiddleware", "ConfigError", "create_app", "create_app_from_settings"]

logger = logging.getLogger(__name__)

MAX_SQL_CHARS = 100_000
MAX_BODY_BYTES = 1024 * 1024
HEALTH_PATH = "/health"
_TRUE = frozenset({"1", "true", "yes", "on"})


class ConfigError(ValueError):
    """The API cannot start with this configuration (the message names the setting)."""


@dataclass(frozen=True)
class ApiConfig:
    storage_uri: str
    # Never printed: repr=False keeps the keys out of tracebacks and debug logs.
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_no_auth: bool = False
    row_cap: int = 10_000
    timeout: float = 10.0
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 2
    memory_limit_mb: int = 1024
    worker_memory_mb: int = 3072
    isolation: str = "process"
    #: the metadata DB the dashboard reads (default: the one beside a local STORAGE_URI, as for crawls)
    meta_db_url: str | None = field(default=None, repr=False)
    #: a distributed crawl's Redis (REDIS_URL): the dashboard shows its workers and queue
    redis_url: str | None = field(default=None, repr=False)
    distributed_key_prefix: str = "crawler"
    #: queries one key may run at once (0: one fewer than the workers, at least 1), so that one caller's
    #: heavy queries never take every worker from the others
    per_key_queries: int = 0
    #: a request body must arrive within this many seconds (a body trickling in holds a connection)
    body_timeout: float = 10.0
    #: the views read the Iceberg tables' current snapshots (QUERY_ICEBERG), not the partition index
    iceberg: IcebergConfig | None = field(default=None, repr=False)

    @property
    def key_share(self) -> int:
        return self.per_key_queries or max(self.workers - 1, 1)

    @classmethod
    def from_settings(cls, settings: BaseSettings, **overrides: Any) -> ApiConfig:
        """Read ``QUERY_*`` from the Scrapy settings, else the environment (same names); then ``overrides``."""

        def get(name: str, default: str) -> str:
            value = settings.get(name)
            if value is None or value == "":
                value = os.environ.get(name, "")
            return str(value) if value not in (None, "") else default

        def number(name: str, default: str, kind: type[int] | type[float]) -> Any:
            raw = get(name, default)
            try:
                return kind(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, not {raw!r}") from None

        keys_setting = settings.get("QUERY_API_KEYS")
        if keys_setting is None or keys_setting == "":
            keys_setting = os.environ.get("QUERY_API_KEYS", "")
        keys = keys_setting if isinstance(keys_setting, (list, tuple)) else str(keys_setting).split(",")
        ingestion = IngestionConfig.from_settings(settings)
        values: dict[str, Any] = {
            "storage_uri": ingestion.storage_uri,
            "meta_db_url": ingestion.meta_db_url,
            "redis_url": get("REDIS_URL", "") or None,
            "distributed_key_prefix": get("DISTRIBUTED_KEY_PREFIX", "crawler"),
            "api_keys": tuple(k.strip() for k in keys if k and k.strip()),
            "allow_no_auth": get("QUERY_API_ALLOW_NO_AUTH", "false").strip().lower() in _TRUE,
            "row_cap": number("QUERY_ROW_CAP", "10000", int),
            "timeout": number("QUERY_TIMEOUT_SECONDS", "10", float),
            "host": get("QUERY_API_HOST", "127.0.0.1"),
            "port": number("QUERY_API_PORT", "8787", int),
            "workers": number("QUERY_WORKERS", "2", int),
            "memory_limit_mb": number("QUERY_MEMORY_LIMIT_MB", "1024", int),
            "worker_memory_mb": number("QUERY_WORKER_MEMORY_MB", "3072", int),
            "isolation": get("QUERY_ISOLATION", "process"),
            "per_key_queries": number("QUERY_PER_KEY_QUERIES", "0", int),
            "body_timeout": number("QUERY_BODY_TIMEOUT_SECONDS", "10", float),
        }
        if get("QUERY_ICEBERG", "false").strip().lower() in _TRUE:
            if ingestion.iceberg is None:
                raise ConfigError("QUERY_ICEBERG reads the Iceberg tables: ICEBERG_ENABLED is off")
            values["iceberg"] = ingestion.iceberg
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if not self.api_keys and not self.allow_no_auth:
            raise ConfigError(
                "no API key configured: set QUERY_API_KEYS (comma-separated), or run without authentication "
                "on purpose with --insecure-no-auth / QUERY_API_ALLOW_NO_AUTH=true"
            )
        if self.row_cap < 1:
            raise ConfigError("QUERY_ROW_CAP must be at least 1")
        if self.timeout <= 0:
            raise ConfigError("QUERY_TIMEOUT_SECONDS must be positive")
        if not 0 <= self.port <= 65535:
            raise ConfigError("QUERY_API_PORT must be a TCP port")
        if self.isolation not in ("process", "thread"):
            raise ConfigError("QUERY_ISOLATION must be 'process' or 'thread'")
        if self.per_key_queries < 0:
            raise ConfigError("QUERY_PER_KEY_QUERIES must be 0 (automatic) or more")


class HideQueryStrings(logging.Filter):
    """uvicorn's access log without query strings: the API takes none, so one is either a mistake or a
    key sent where it does not belong (``?api_key=…``) — never written to a log, whatever the route."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (*args[:2], args[2].split("?", 1)[0] + "?…", *args[3:])
        return True


ACCESS_LOG_FILTER = HideQueryStrings()
logging.getLogger("uvicorn.access").addFilter(ACCESS_LOG_FILTER)


class KeyShares:
    """At most ``share`` queries at once per API key: a key over its share is answered 429 at once
    rather than queued behind its own queries, and the other keys keep the remaining workers."""

    def __init__(self, share: int) -> None:
        self.share = share
        self._running: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> bool:
        with self._lock:
            if self._running.get(key, 0) >= self.share:
                return False
            self._running[key] = self._running.get(key, 0) + 1
            return True

    def give_back(self, key: str) -> None:
        with self._lock:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]


# -- authentication --------------------------------------------------------------------------------


def _digest(key: str | bytes) -> bytes:
    # Keys are compared as SHA-256 digests: equal lengths, so compare_digest leaks nothing, not even the length.
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


class ApiKeyMiddleware:
    """Refuses every HTTP request (any path, known or not) that does not carry a configured key.

    Pure ASGI rather than a FastAPI dependency, so the docs, the OpenAPI document, 404s and any
    route added later are covered too.
    """

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app = app
        self._digests = tuple(_digest(key) for key in keys)

    def _presented(self, scope: Scope) -> bytes | None:
        headers = dict(scope.get("headers") or ())
        key = headers.get(b"x-api-key")
        if key:
            return key.strip()
        authorization = headers.get(b"authorization", b"")
        scheme, _, credentials = authorization.strip().partition(b" ")
        if scheme.lower() == b"bearer" and credentials.strip():
            return credentials.strip()
        if scheme.lower() == b"basic" and credentials.strip():
            # Browsers (for /docs) send user:password; the password is the key.
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            return decoded.partition(b":")[2] or None
        return None

    def _match(self, presented: bytes | None) -> int:
        """1-based position of the key in QUERY_API_KEYS (a name for logs that says nothing about it), 0: none."""
        if presented is None:
            return 0
        digest = _digest(presented)
        matched = 0
        for position, expected in enumerate(self._digests, 1):
            # No early exit: the time does not depend on which key matched, or how much of it.
            if hmac.compare_digest(digest, expected):
                matched = position
        return matched

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        matched = self._match(self._presented(scope))
        if matched:
            scope.setdefault("state", {})["api_key_id"] = f"#{matched}"
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("path") == HEALTH_PATH:
            await self.app(scope, receive, send)  # for load balancers; it tells a caller without a key nothing more
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = orjson.dumps(
            {"error": "unauthorized", "detail": "an API key is required (X-API-Key or Authorization: Bearer)"}
        )
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="query-api"'),
                    # Lets a browser opening /docs ask for the key (as the password).
                    (b"www-authenticate", b'Basic realm="query-api", charset="UTF-8"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Request bodies of at most ``limit`` bytes, refused in the API's error shape: at once when the
    declared ``Content-Length`` is over it, else as soon as the bytes read pass it (an ``HTTPException``
    raised while the route reads the body, answered by the API's handler). A body must also arrive
    within ``seconds`` of the request: one trickling in a byte at a time would hold its connection and a
    coroutine for as long as the caller likes (408)."""

    def __init__(self, app: ASGIApp, limit: int, seconds: float = 10.0) -> None:
        self.app = app
        self.limit = limit
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is over {self.limit} bytes"
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await _error(413, "too_large", detail)(scope, receive, send)
            return
        received = 0
        deadline = asyncio.get_running_loop().time() + self.seconds

        async def counted() -> Any:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(deadline - asyncio.get_running_loop().time(), 0))
            except TimeoutError:
                late = f"the request body did not arrive within {self.seconds:g} s"
                raise StarletteHTTPException(408, late) from None
            received += len(message.get("body", b""))
            if received > self.limit:
                raise StarletteHTTPException(413, detail)
            return message

        await self.app(scope, counted, send)


# -- request and response models (also the OpenAPI schema) ---------------------------------------


def _example_sql() -> str:
    """An example for the OpenAPI schema, on a view that exists (whichever source declares it)."""
    tables = sorted(record_type.table for record_type in Record.registry.values())
    return f"SELECT * FROM {tables[0]} LIMIT 10" if tables else "SELECT 1"


class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS, examples=[_example_sql()])


class QueryResponse(BaseModel):
    columns: list[str]
    types: list[str] = Field(description="DuckDB type of each column")
    rows: list[list[Any]] = Field(
        description="Rows as arrays in column order. DECIMAL, HUGEINT beyond 64 bits, NaN/Infinity and "
        "INTERVAL come as strings, timestamps as ISO 8601 strings, BLOB as base64."
    )
    row_count: int
    truncated: bool = Field(description="true when rows were cut off at the row cap or the result size cap")
    elapsed_ms: float


class ErrorResponse(BaseModel):
    error: str = Field(
        description="rejected, sql_error, timeout, busy, bad_request, too_large, request_timeout, not_found, "
        "unavailable or unauthorized"
    )
    detail: str


class NamespaceInfo(BaseModel):
    namespace: str
    table: str
    history_table: str
    primary_key: list[str]
    record_count: int = Field(description="records stored in Parquet (every version), from the catalog")
    first_ingested_at: str | None = None
    last_ingested_at: str | None = None
    updated_at: str | None = Field(default=None, description="when the catalog was last written; null: no data yet")


class Health(BaseModel):
    status: str
    engine: dict[str, Any] | None = Field(default=None, description="the query workers (only with a key)")


_QUERY_ERRORS: list[tuple[type[QueryError], int, str]] = [
    (QueryTimeout, 504, "timeout"),
    (QueryBusy, 503, "busy"),
    (QueryRejected, 400, "rejected"),
    (QueryFailed, 422, "sql_error"),
]


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": error, "detail": detail}, status, headers)


# -- the app ---------------------------------------------------------------------------------------


def create_app(config: ApiConfig, *, store: ObjectStore | None = None) -> FastAPI:
    """The API for ``config``; the query workers start with the app (its lifespan) and stop with it."""
    config.validate()
    if store is None:
        try:
            store = open_store(config.storage_uri)
        except ValueError as exc:
            raise ConfigError(f"STORAGE_URI: {exc}") from None
    state: dict[str, SafeQueryEngine] = {}
    shares = KeyShares(config.key_share)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        state["engine"] = SafeQueryEngine(
            store,
            row_cap=config.row_cap,
            timeout=config.timeout,
            memory_limit_mb=config.memory_limit_mb,
            workers=config.workers,
            worker_memory_mb=config.worker_memory_mb,
            isolation=config.isolation,  # type: ignore[arg-type]
            iceberg=config.iceberg,
        )
        logger.info(
            "query API over %s: %d %s worker(s), row cap %d, timeout %gs, %s",
            store.uri,
            config.workers,
            config.isolation,
            config.row_cap,
            config.timeout,
            f"{len(config.api_keys)} API key(s)" if config.api_keys else "NO AUTHENTICATION",
        )
        try:
            yield
        finally:
            state.pop("engine").close()

    # Declared for the OpenAPI document and the docs' "Authorize" button; ApiKeyMiddleware enforces.
    documented_auth = [
        Security(APIKeyHeader(name="X-API-Key", auto_error=False)),
        Security(HTTPBearer(auto_error=False)),
    ]
    app = FastAPIOffline(
        title="Data-ingestion SQL API",
        version="1",
        summary="Read-only SQL (DuckDB) over the platform's stored records.",
        description=__doc__,
        lifespan=lifespan,
        dependencies=documented_auth if config.api_keys else None,
        max_body_size=None,  # BodyLimit: the same limit, answered in the API's error shape
        redoc_url=None,
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400:  # a body FastAPI could not parse: not UTF-8, or JSON nested too deep
            return _error(422, "bad_request", "the request body is not JSON in UTF-8 (or it nests too deep)")
        kind = {404: "not_found", 405: "method_not_allowed", 408: "request_timeout", 413: "too_large"}.get(
            exc.status_code, "http_error"
        )
        return _error(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', '')}" for error in exc.errors()
        )
        return _error(422, "bad_request", problems or "the request body is not valid")

    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES, seconds=config.body_timeout)
    if config.api_keys:  # outermost: nothing answers a caller without a key but 401 (and /health)
        app.add_middleware(ApiKeyMiddleware, keys=config.api_keys)
    else:
        logger.warning("the query API runs WITHOUT authentication (QUERY_API_ALLOW_NO_AUTH / --insecure-no-auth)")

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorResponse, "description": "missing or wrong API key"},
    }

    @app.post(
        "/query",
        response_model=QueryResponse,
        responses={
            **errors,
            400: {"model": ErrorResponse, "description": "statement not allowed (only one SELECT over the views)"},
            422: {"model": ErrorResponse, "description": "SQL error"},
            429: {"model": ErrorResponse, "description": "this key already runs its share of concurrent queries"},
            503: {"model": ErrorResponse, "description": "every query worker is busy"},
            504: {"model": ErrorResponse, "description": "the query ran longer than the timeout"},
        },
        summary="Run one SELECT",
    )
    def query(body: QueryRequest, request: Request) -> Response:
        # A plain def: FastAPI runs it in its thread pool, and the engine blocks.
        engine = state["engine"]
        key = getattr(request.state, "api_key_id", "-")  # the key's position in QUERY_API_KEYS, never the key
        if not shares.take(key):
            logger.info("query refused key=%s: over its share of %d concurrent queries", key, shares.share)
            detail = f"this API key already runs {shares.share} queries: wait for one to finish"
            return _error(429, "busy", detail, {"Retry-After": "1"})
        try:
            result = engine.run(body.sql)
        except QueryError as exc:
            for kind, status, name in _QUERY_ERRORS:
                if isinstance(exc, kind):
                    logger.info("query %s (%d) key=%s: %s | %s", name, status, key, exc.message, _one_line(body.sql))
                    headers = {"Retry-After": "1"} if status == 503 else None
                    return _error(status, name, exc.message, headers)
            raise
        finally:
            shares.give_back(key)
        logger.info(
            "query ok key=%s: %d row(s)%s in %.0f ms | %s",
            key,
            result.row_count,
            " (truncated)" if result.truncated else "",
            result.elapsed_ms,
            _one_line(body.sql),
        )
        return _json(
            {
                "columns": result.columns,
                "types": result.types,
                "rows": result.rows,
                "row_count": result.row_count,
                "truncated": result.truncated,
                "elapsed_ms": result.elapsed_ms,
            }
        )

    @app.get("/namespaces", response_model=list[NamespaceInfo], responses=errors, summary="Namespaces and tables")
    def namespaces() -> Response:
        out = []
        for namespace, record_type in sorted(Record.registry.items()):
            catalog = _read_catalog(store, namespace) or {}
            out.append(
                {
                    "namespace": namespace,
                    "table": record_type.table,
                    "history_table": f"{record_type.table}_history",
                    "primary_key": list(catalog.get("primary_key") or record_type.key),
                    "record_count": int(catalog.get("record_count") or 0),
                    "first_ingested_at": catalog.get("first_ingested_at"),
                    "last_ingested_at": catalog.get("last_ingested_at"),
                    "updated_at": catalog.get("updated_at"),
                }
            )
        return _json(out)

    @app.get(
        "/catalog/{namespace:path}",
        responses={**errors, 404: {"model": ErrorResponse, "description": "unknown namespace or no data yet"}},
        summary="The stored catalog.json of a namespace",
    )
    def catalog(namespace: str) -> Response:
        # Only registered namespaces: the path never becomes an arbitrary key of the store.
        if namespace not in Record.registry:
            return _error(404, "not_found", f"unknown namespace {namespace!r}")
        try:
            data = store.get_bytes(catalog_key(namespace))
        except KeyError:
            return _error(404, "not_found", f"namespace {namespace!r} has no catalog yet (nothing stored)")
        return Response(data, media_type="application/json")

    meta_db_url = config.meta_db_url or default_meta_db_url(config.storage_uri)

    @app.get("/", response_class=HTMLResponse, responses=errors, summary="The status dashboard (HTML, SVG plots)")
    def dashboard() -> Response:
        # imported here: the API answers queries without the dashboard's modules loaded
        from crawler.dashboard import dashboard_html

        server = _redis(config.redis_url) if config.redis_url else None
        try:
            page = dashboard_html(store, meta_db_url, server=server, key_prefix=config.distributed_key_prefix)
        except Exception as exc:  # the metadata DB unreachable or locked: one line, in the API's error shape
            logger.warning(
                "dashboard: cannot read the metadata DB: %s", exc, exc_info=logger.isEnabledFor(logging.DEBUG)
            )
            return _error(503, "unavailable", f"the metadata DB (META_DB_URL) cannot be read: {type(exc).__name__}")
        finally:
            if server is not None:
                server.close()
        # no-store: a proxy or the browser's cache must not keep the page (it sits behind the key)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get(HEALTH_PATH, response_model=Health, summary="Liveness of the API and its workers (no key needed)")
    def health(request: Request) -> Response:
        engine = state.get("engine")
        status = engine.status() if engine else {}
        ok = engine is not None and (status.get("isolation") == "thread" or status.get("alive", 0) > 0)
        body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
        if not config.api_keys or getattr(request.state, "api_key_id", None):
            body["engine"] = status
        return _json(body, 200 if ok else 503)

    return app


def _read_catalog(store: ObjectStore, namespace: str) -> dict[str, Any] | None:
    try:
        data = orjson.loads(store.get_bytes(catalog_key(namespace)))
    except KeyError:
        return None
    except orjson.JSONDecodeError:
        logger.warning("catalog of %s is not valid JSON", namespace)
        return None
    return data if isinstance(data, dict) else None


def _redis(url: str) -> Any:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # short timeouts, no retries: a Redis that does not answer must not hold the page
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


def _one_line(sql: str, limit: int = 300) -> str:
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def create_app_from_settings(settings: BaseSettings, **overrides: Any) -> tuple[FastAPI, ApiConfig]:
    config = ApiConfig.from_settings(settings, **overrides)
    return create_app(config), config
