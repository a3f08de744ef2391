"""A loopback Iceberg REST catalog, backed by a real PyIceberg SQL catalog: the endpoints of the Iceberg
REST specification that PyIceberg's ``RestCatalog`` calls (config; namespaces: list, create, load, exists,
drop; tables: list, create, load, exists, commit, drop), with bearer-token authentication and a
warehouse prefix as Cloudflare's R2 Data Catalog answers them. No REST catalog server can be installed
here; this one keeps the protocol honest (requests and answers are PyIceberg's own models, commits are
checked against their requirements by the SQL catalog, a conflict is a 409).

Requests that reach it are counted by endpoint (``requests``), so a test can see the REST path was used.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from pyiceberg.catalog.rest import CreateTableRequest
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NamespaceNotEmptyError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.table import CommitTableRequest

from tests.fakes._server import ServerHandle, run_in_thread

#: the namespace separator of REST paths (the specification's default, the unit separator)
SEPARATOR = "\x1f"
#: exceptions of the SQL catalog as REST answers: (status, error type)
ERRORS: dict[type[Exception], tuple[int, str]] = {
    NoSuchTableError: (404, "NoSuchTableException"),
    NoSuchNamespaceError: (404, "NoSuchNamespaceException"),
    TableAlreadyExistsError: (409, "AlreadyExistsException"),
    NamespaceAlreadyExistsError: (409, "AlreadyExistsException"),
    NamespaceNotEmptyError: (409, "NamespaceNotEmptyException"),
    CommitFailedException: (409, "CommitFailedException"),
}


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")


def _model(model: Any, status: int = 200) -> web.Response:
    # PyIceberg's models serialise by their REST aliases ("metadata-location", ...)
    return web.Response(text=model.model_dump_json(), status=status, content_type="application/json")


def _error(status: int, kind: str, message: str) -> web.Response:
    return _json({"error": {"message": message, "type": kind, "code": status}}, status)


class FakeIcebergRest:
    """An Iceberg REST catalog over ``SqlCatalog(uri=sql_uri)``; ``token``: the bearer token it requires
    (``None``: none); ``warehouse``: the prefix it hands out (as R2 Data Catalog does)."""

    def __init__(
        self, sql_uri: str, *, token: str | None = "secret-token", warehouse: str = "test-warehouse", **io: str
    ) -> None:
        self.catalog = SqlCatalog("rest-backing", uri=sql_uri, **io)
        self.token = token
        self.warehouse = warehouse
        self.requests: Counter[str] = Counter()

    # -- plumbing ----------------------------------------------------------------------------------

    def app(self) -> web.Application:
        # GET routes answer HEAD too (namespace_exists, table_exists)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/config", self._threaded(self.config))
        for base in ("/v1/{prefix}", "/v1"):
            app.router.add_get(f"{base}/namespaces", self._threaded(self.list_namespaces))
            app.router.add_post(f"{base}/namespaces", self._threaded(self.create_namespace))
            app.router.add_get(f"{base}/namespaces/{{namespace}}", self._threaded(self.load_namespace))
            app.router.add_delete(f"{base}/namespaces/{{namespace}}", self._threaded(self.drop_namespace))
            app.router.add_get(f"{base}/namespaces/{{namespace}}/tables", self._threaded(self.list_tables))
            app.router.add_post(f"{base}/namespaces/{{namespace}}/tables", self._threaded(self.create_table))
            app.router.add_get(f"{base}/namespaces/{{namespace}}/tables/{{table}}", self._threaded(self.load_table))
            app.router.add_post(f"{base}/namespaces/{{namespace}}/tables/{{table}}", self._threaded(self.commit_table))
            app.router.add_delete(f"{base}/namespaces/{{namespace}}/tables/{{table}}", self._threaded(self.drop_table))
        return app

    @contextmanager
    def serve(self) -> Iterator[ServerHandle]:
        with run_in_thread(self.app(), name="fake-iceberg-rest") as handle:
            yield handle

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error(401, "NotAuthorizedException", "a valid bearer token is required")
        route = request.match_info.route.resource
        self.requests[f"{request.method} {route.canonical if route else request.path}"] += 1
        try:
            return await handler(request)
        except tuple(ERRORS) as exc:
            status, kind = next(value for error, value in ERRORS.items() if isinstance(exc, error))
            return _error(status, kind, str(exc))

    @staticmethod
    def _threaded(
        endpoint: Callable[[web.Request, bytes], web.StreamResponse],
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The body read on the loop, the SQL catalog (which blocks) called in a worker thread."""

        async def handler(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            return await asyncio.to_thread(endpoint, request, body)

        return handler

    @staticmethod
    def _namespace(request: web.Request) -> tuple[str, ...]:
        return tuple(unquote(request.match_info["namespace"]).split(SEPARATOR))

    def _identifier(self, request: web.Request) -> tuple[str, ...]:
        return (*self._namespace(request), unquote(request.match_info["table"]))

    @staticmethod
    def _table_response(table: Any) -> web.Response:
        return web.Response(
            text=(
                '{"metadata-location": '
                + orjson.dumps(table.metadata_location).decode()
                + ', "metadata": '
                + table.metadata.model_dump_json()
                + ', "config": {}}'
            ),
            content_type="application/json",
        )

    # -- endpoints (called in a worker thread with the request already read) -----------------------

    def config(self, request: web.Request, body: bytes) -> web.Response:
        overrides = {"prefix": self.warehouse} if request.query.get("warehouse") else {}
        return _json({"defaults": {}, "overrides": overrides})

    def list_namespaces(self, request: web.Request, body: bytes) -> web.Response:
        return _json({"namespaces": [list(ns) for ns in self.catalog.list_namespaces()]})

    def create_namespace(self, request: web.Request, body: bytes) -> web.Response:
        create = orjson.loads(body)
        self.catalog.create_namespace(tuple(create["namespace"]), create.get("properties") or {})
        return _json({"namespace": create["namespace"], "properties": create.get("properties") or {}})

    def load_namespace(self, request: web.Request, body: bytes) -> web.Response:
        namespace = self._namespace(request)
        properties = self.catalog.load_namespace_properties(namespace)
        if request.method == "HEAD":
            return web.Response(status=204)
        return _json({"namespace": list(namespace), "properties": properties})

    def drop_namespace(self, request: web.Request, body: bytes) -> web.Response:
        self.catalog.drop_namespace(self._namespace(request))
        return web.Response(status=204)

    def list_tables(self, request: web.Request, body: bytes) -> web.Response:
        tables = self.catalog.list_tables(self._namespace(request))
        return _json({"identifiers": [{"namespace": list(t[:-1]), "name": t[-1]} for t in tables]})

    def create_table(self, request: web.Request, body: bytes) -> web.Response:
        create = CreateTableRequest.model_validate_json(body)
        table = self.catalog.create_table(
            (*self._namespace(request), create.name),
            schema=create.table_schema,
            location=create.location,
            partition_spec=create.partition_spec,
            sort_order=create.write_order,
            properties=create.properties,
        )
        return self._table_response(table)

    def load_table(self, request: web.Request, body: bytes) -> web.Response:
        table = self.catalog.load_table(self._identifier(request))
        if request.method == "HEAD":
            return web.Response(status=204)
        return self._table_response(table)

    def commit_table(self, request: web.Request, body: bytes) -> web.Response:
        commit = CommitTableRequest.model_validate_json(body)
        table = self.catalog.load_table(self._identifier(request))
        # the SQL catalog checks the requirements (the snapshot the client built on) and raises a
        # CommitFailedException, a 409, when another commit got in first
        return _model(self.catalog.commit_table(table, commit.requirements, commit.updates))

    def drop_table(self, request: web.Request, body: bytes) -> web.Response:
        self.catalog.drop_table(self._identifier(request))
        return web.Response(status=204)
