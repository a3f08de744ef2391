"""The SQL API over real HTTP on loopback: uvicorn in a thread (and `scrapy serve` as a subprocess)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from scrapy.settings import Settings

from crawler.items import Record
from crawler.pipelines.index import catalog_key
from crawler.query.api import ApiConfig, ConfigError, create_app
from crawler.spiders.npm.records import NpmPackage
from crawler.storage import ObjectStore, open_store
from tests import faults
from tests.fakes.s3 import fake_aws_env
from tests.query import ENDLESS, HIDDEN_WRITES, PACKAGES, PASSWD_MARK, REFUSED, UPDATED, write_npm

KEY = "test-key-" + uuid.uuid4().hex
OTHER_KEY = "other-key-" + uuid.uuid4().hex
WRONG_KEY = "wrong-key-" + uuid.uuid4().hex
TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
ROW_CAP = 10


class Server:
    """uvicorn on 127.0.0.1, port 0, in a thread; the app's lifespan (query workers) runs with it."""

    def __init__(self, app: FastAPI) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test", daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    @property
    def url(self) -> str:
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def client(self, key: str | None = KEY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=60)

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> ObjectStore:
    root = tmp_path_factory.mktemp("api")
    store = open_store(str(root / "data"))
    write_npm(store, f"sqlite:///{root / 'meta.db'}")
    return store


@pytest.fixture(scope="module")
def server(data: ObjectStore) -> Iterator[Server]:
    config = ApiConfig(
        storage_uri=data.uri,
        api_keys=(KEY, OTHER_KEY),
        row_cap=ROW_CAP,
        timeout=TIMEOUT,
        workers=2,
        body_timeout=BODY_TIMEOUT,
    )
    with Server(create_app(config, store=data)) as server:
        yield server


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def assert_healthy(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30  # a killed worker is being replaced: give it the time to start
    while (health := client.get("/health")).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    response = client.post("/query", json={"sql": "SELECT count(*) AS n FROM npm_package"})
    assert response.status_code == 200 and response.json()["rows"] == [[PACKAGES]]


# -- queries ---------------------------------------------------------------------------------------


def test_select_returns_rows(client: httpx.Client) -> None:
    response = client.post("/query", json={"sql": "SELECT name, version FROM npm_package ORDER BY name LIMIT 3"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"columns", "types", "rows", "row_count", "truncated", "elapsed_ms"}
    assert body["columns"] == ["name", "version"]
    assert body["types"] == ["VARCHAR", "VARCHAR"]
    assert body["rows"] == [["pkg-00", "2.0.0"], ["pkg-01", "2.0.0"], ["pkg-02", "2.0.0"]]
    assert body["row_count"] == 3 and body["truncated"] is False
    assert isinstance(body["elapsed_ms"], float) and body["elapsed_ms"] >= 0


def test_history_view(client: httpx.Client) -> None:
    sql = "SELECT _run_id, count(*) FROM npm_package_history GROUP BY 1 ORDER BY 1"
    assert client.post("/query", json={"sql": sql}).json()["rows"] == [["run-1", PACKAGES], ["run-2", UPDATED]]


def test_row_cap_truncates(client: httpx.Client) -> None:
    body = client.post("/query", json={"sql": "SELECT name FROM npm_package ORDER BY name"}).json()
    assert body["row_count"] == ROW_CAP and len(body["rows"]) == ROW_CAP and body["truncated"] is True


def test_sql_error_is_422(client: httpx.Client) -> None:
    response = client.post("/query", json={"sql": "SELECT * FROM no_such_table"})
    assert response.status_code == 422
    assert response.json()["error"] == "sql_error" and "no_such_table" in response.json()["detail"]


def test_bad_requests(client: httpx.Client) -> None:
    """Every error has one shape: {"error", "detail"}."""

    def error(response: httpx.Response, status: int, kind: str) -> str:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "detail"} and response.json()["error"] == kind
        return response.json()["detail"]

    assert "sql" in error(client.post("/query", json={}), 422, "bad_request")
    assert "extra" in error(client.post("/query", json={"sql": "SELECT 1", "extra": 1}), 422, "bad_request")
    error(client.post("/query", json={"sql": "SELECT 1" + " " * 100_000}), 422, "bad_request")
    error(client.post("/query", content=b"{not json", headers={"content-type": "application/json"}), 422, "bad_request")
    too_big = client.post(
        "/query", content=json.dumps({"sql": "x" * 2_000_000}), headers={"content-type": "application/json"}
    )
    error(too_big, 413, "too_large")
    error(client.get("/query"), 405, "method_not_allowed")
    error(client.get("/no-such-route"), 404, "not_found")


# -- authentication --------------------------------------------------------------------------------

ROUTES = [
    ("POST", "/query"),
    ("GET", "/namespaces"),
    ("GET", "/catalog/npm"),
    ("GET", "/docs"),
    ("GET", "/static-offline-docs/swagger-ui-bundle.js"),
    ("GET", "/openapi.json"),
    ("GET", "/no-such-route"),
]


def _request(client: httpx.Client, method: str, path: str, **headers: str) -> httpx.Response:
    body = {"json": {"sql": "SELECT 1"}} if method == "POST" else {}
    return client.request(method, path, headers=headers, **body)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_needs_a_key(server: Server, method: str, path: str) -> None:
    with server.client(key=None) as anonymous:
        for headers in (
            {},
            {"X-API-Key": WRONG_KEY},
            {"X-API-Key": ""},
            {"Authorization": f"Bearer {WRONG_KEY}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Basic {base64.b64encode(f'user:{WRONG_KEY}'.encode()).decode()}"},
            {"Authorization": "Basic not-base64!"},
            {"Authorization": KEY},  # no scheme
            {"X-API-Key": KEY[:-1]},
            {"X-API-Key": KEY + "x"},
        ):
            response = _request(anonymous, method, path, **headers)
            assert response.status_code == 401, (headers, response.text)
            assert response.json()["error"] == "unauthorized"
            assert any(v.startswith("Bearer") for v in response.headers.get_list("www-authenticate"))
            assert KEY not in response.text and WRONG_KEY not in response.text


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_accepts_each_key_in_each_form(server: Server, method: str, path: str) -> None:
    basic = base64.b64encode(f"anyone:{OTHER_KEY}".encode()).decode()
    with server.client(key=None) as client:
        for headers in (
            {"X-API-Key": KEY},
            {"X-API-Key": OTHER_KEY},
            {"Authorization": f"Bearer {KEY}"},
            {"Authorization": f"Basic {basic}"},
        ):
            response = _request(client, method, path, **headers)
            assert response.status_code == (404 if path == "/no-such-route" else 200), (headers, response.text)


def test_health_answers_without_a_key_and_tells_nothing_more(server: Server) -> None:
    with server.client(key=None) as anonymous:
        for headers in ({}, {"X-API-Key": WRONG_KEY}):
            response = anonymous.get("/health", headers=headers)
            assert response.status_code == 200 and response.json() == {"status": "ok"}
        # a route that sounds alike is not let through
        assert anonymous.get("/health/../namespaces").status_code == 401
        assert anonymous.get("/healthz").status_code == 401
        keyed = anonymous.get("/health", headers={"X-API-Key": KEY}).json()
        assert keyed["status"] == "ok" and keyed["engine"]["workers"] >= 1


def test_keys_are_not_logged(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with server.client(key=None) as client:
        client.post("/query", json={"sql": "SELECT 42"}, headers={"X-API-Key": KEY})
        client.post("/query", json={"sql": "SELECT 42"}, headers={"Authorization": f"Bearer {WRONG_KEY}"})
        client.post("/query", json={"sql": "SELECT * FROM read_text('/etc/passwd')"}, headers={"X-API-Key": OTHER_KEY})
    assert "SELECT 42" in caplog.text and "key=#1" in caplog.text and "key=#2" in caplog.text
    for key in (KEY, OTHER_KEY, WRONG_KEY):
        assert key not in caplog.text
    assert KEY not in repr(ApiConfig(storage_uri="x", api_keys=(KEY,)))


# -- catalog and namespaces ------------------------------------------------------------------------


def test_namespaces(client: httpx.Client) -> None:
    response = client.get("/namespaces")
    assert response.status_code == 200
    namespaces = {ns["namespace"]: ns for ns in response.json()}
    assert set(namespaces) == set(Record.registry)
    assert namespaces["npm"] == {
        "namespace": "npm",
        "table": "npm_package",
        "history_table": "npm_package_history",
        "primary_key": ["name"],
        "record_count": PACKAGES + UPDATED,
        "first_ingested_at": "2026-11-24T08:00:00.000000Z",
        "last_ingested_at": "2026-11-25T09:30:00.000000Z",
        "updated_at": namespaces["npm"]["updated_at"],
    }
    assert namespaces["npm"]["updated_at"]
    assert namespaces["pypi"]["record_count"] == 0 and namespaces["pypi"]["updated_at"] is None


def test_catalog(client: httpx.Client, data: ObjectStore) -> None:
    response = client.get("/catalog/npm")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == json.loads(data.get_bytes(catalog_key("npm")))
    assert response.json()["record_count"] == PACKAGES + UPDATED
    assert client.get("/catalog/pypi").status_code == 404  # registered, nothing stored yet
    for path in ("/catalog/nope", "/catalog/npm%2F..%2F..%2Fetc%2Fpasswd", "/catalog/_meta", "/catalog/"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert PASSWD_MARK not in response.text


def test_catalog_of_a_namespace_with_a_slash(
    client: httpx.Client, data: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(Record.registry, "test/nested", NpmPackage)
    data.put_bytes(catalog_key("test/nested"), json.dumps({"namespace": "test/nested", "record_count": 7}).encode())
    response = client.get("/catalog/test/nested")
    assert response.status_code == 200 and response.json() == {"namespace": "test/nested", "record_count": 7}
    listed = {ns["namespace"]: ns for ns in client.get("/namespaces").json()}
    assert listed["test/nested"]["record_count"] == 7


# -- docs ------------------------------------------------------------------------------------------


def test_openapi_and_docs(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/query", "/namespaces", "/catalog/{namespace}", "/health"} <= set(spec["paths"])
    assert {"QueryRequest", "QueryResponse", "ErrorResponse"} <= set(spec["components"]["schemas"])
    schemes = spec["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"}.items() <= schemes["APIKeyHeader"].items()
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert set(spec["paths"]["/query"]["post"]["responses"]) >= {"200", "400", "401", "422", "503", "504"}
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower() and "/openapi.json" in docs.text
    # offline: every script and style sheet comes from this server
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(url.startswith("/") for url in assets), assets
    for url in assets:
        assert client.get(url).status_code == 200, url


# -- hostile queries over HTTP ---------------------------------------------------------------------


@pytest.mark.parametrize("sql", REFUSED)
def test_refused_over_http(client: httpx.Client, sql: str) -> None:
    response = client.post("/query", json={"sql": sql})
    assert PASSWD_MARK not in response.text
    if sql == "":
        assert response.status_code == 422  # the request model wants at least one character
        return
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "rejected"


@pytest.mark.parametrize("sql", HIDDEN_WRITES)
def test_hidden_writes_over_http(client: httpx.Client, sql: str) -> None:
    response = client.post("/query", json={"sql": sql})
    assert response.status_code in (400, 422)
    assert_healthy(client)


@pytest.mark.parametrize("sql", ENDLESS)
def test_endless_over_http(client: httpx.Client, sql: str) -> None:
    started = time.monotonic()
    response = client.post("/query", json={"sql": sql})
    assert time.monotonic() - started < TIMEOUT + 10
    if "range(10000000000) a" in sql:
        assert response.status_code in (504, 422)  # out of memory is also a way to be cut off
    else:
        assert response.status_code == 504 and response.json()["error"] == "timeout"
    assert_healthy(client)


def test_memory_bomb_over_http(client: httpx.Client) -> None:
    response = client.post("/query", json={"sql": "SELECT len(range(300000000))"})
    assert response.status_code == 422 and "memory" in response.json()["detail"]
    assert_healthy(client)


# -- hostile requests (the fault suite's shapes, aimed at the API) -----------------------------------

HOSTILE_BODIES = {
    "JSON nested 200,000 deep": lambda: b"[" * 200_000 + b"]" * 200_000,
    "a value nested 50,000 deep": lambda: b'{"sql":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "bytes that are not UTF-8": lambda: b'{"sql": "SELECT \xff\xfe 1"}',
    # the API never inflates a request body: a gzip bomb is 200 KB of bytes that are not JSON
    "a gzip bomb of 200 MB": lambda: gzip.compress(b'{"sql": "' + b" " * 200_000_000 + b'"}', compresslevel=1),
}


@pytest.mark.faults
@pytest.mark.parametrize("shape", list(HOSTILE_BODIES))
def test_hostile_bodies_are_bad_requests(client: httpx.Client, shape: str) -> None:
    headers = {"content-type": "application/json"}
    if "gzip" in shape:
        headers["content-encoding"] = "gzip"
    response = client.post("/query", content=HOSTILE_BODIES[shape](), headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "bad_request"
    assert_healthy(client)
    faults.record("(query API)", f"request body: {shape}", 1)


def _raw(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=1)


@pytest.mark.faults
def test_a_body_trickling_in_is_cut_off(server: Server, client: httpx.Client) -> None:
    """A body sent a byte at a time gets 408 once QUERY_BODY_TIMEOUT_SECONDS have passed, whatever the pace."""
    with _raw(server) as sock:
        head = f"POST /query HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n"
        sock.sendall((head + "Content-Length: 1000\r\n\r\n").encode())
        started, answer = time.monotonic(), b""
        while time.monotonic() - started < BODY_TIMEOUT + 8:
            try:
                sock.sendall(b" ")
                sock.settimeout(0.3)
                answer = sock.recv(4096)
                break
            except TimeoutError:
                continue
            except OSError:
                break
        elapsed = time.monotonic() - started
        with contextlib.suppress(OSError):  # the rest of the answer (its body may come in a second packet)
            while not answer.endswith(b"}") and (more := sock.recv(4096)):
                answer += more
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"request_timeout"' in answer
    assert BODY_TIMEOUT - 0.5 <= elapsed < BODY_TIMEOUT + 4, elapsed
    assert_healthy(client)
    faults.record("(query API)", "request body at about 3 bytes/s", 1)


@pytest.mark.faults
def test_a_header_bomb_is_cut_and_idle_connections_starve_no_one(server: Server, client: httpx.Client) -> None:
    with _raw(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: ")
        sent = 0
        with contextlib.suppress(OSError):
            while sent < 100_000_000:
                sock.sendall(b"a" * 1_000_000)
                sent += 1_000_000
        assert sent < 100_000_000, "100 MB of one header were read"
    idle = [_raw(server) for _ in range(300)]  # connections opened and never used
    try:
        started = time.monotonic()
        assert_healthy(client)
        assert time.monotonic() - started < 5
    finally:
        for sock in idle:
            sock.close()
    faults.record("(query API)", "a 100 MB header; 300 idle connections", 2)


def test_still_healthy_after_the_hostile_suite(client: httpx.Client, data: ObjectStore) -> None:
    assert_healthy(client)
    assert client.post("/query", json={"sql": "SELECT count(*) FROM npm_package_history"}).json()["rows"] == [
        [PACKAGES + UPDATED]
    ]
    for path in (
        "/tmp/sandbox-escape.csv",
        "/tmp/sandbox-escape.parquet",
        "/tmp/sandbox-escape",
        "/tmp/sandbox-escape.db",
    ):
        assert not Path(path).exists()


# -- configuration ---------------------------------------------------------------------------------


def test_no_key_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUERY_API_KEYS", raising=False)
    monkeypatch.delenv("QUERY_API_ALLOW_NO_AUTH", raising=False)
    with pytest.raises(ConfigError, match="QUERY_API_KEYS"):
        ApiConfig.from_settings(Settings({"STORAGE_URI": "/tmp/x"}))
    with pytest.raises(ConfigError):
        create_app(ApiConfig(storage_uri="/tmp/x"))
    with pytest.raises(ConfigError):
        ApiConfig.from_settings(Settings({"QUERY_API_KEYS": " , "}))


def test_settings_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUERY_API_KEYS", "from-env")
    monkeypatch.setenv("QUERY_ROW_CAP", "5")
    config = ApiConfig.from_settings(
        Settings({"STORAGE_URI": "/srv/data", "QUERY_API_KEYS": "a, b", "QUERY_TIMEOUT_SECONDS": "2.5"}), port=9000
    )
    assert config.api_keys == ("a", "b") and config.row_cap == 5 and config.timeout == 2.5
    assert config.storage_uri == "/srv/data" and config.port == 9000 and config.host == "127.0.0.1"
    monkeypatch.delenv("QUERY_API_KEYS")
    assert ApiConfig.from_settings(Settings({"QUERY_API_ALLOW_NO_AUTH": "true"})).allow_no_auth is True
    with pytest.raises(ConfigError, match="QUERY_ROW_CAP"):
        ApiConfig.from_settings(Settings({"QUERY_API_KEYS": "a", "QUERY_ROW_CAP": "lots"}))


def test_explicitly_insecure_server_needs_no_key(data: ObjectStore) -> None:
    config = ApiConfig(storage_uri=data.uri, allow_no_auth=True, isolation="thread", workers=1)
    with Server(create_app(config, store=data)) as server, server.client(key=None) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/query", json={"sql": "SELECT 1"}).json()["rows"] == [[1]]
        assert client.post("/query", json={"sql": "FROM '/etc/passwd'"}).status_code == 400


# -- S3 --------------------------------------------------------------------------------------------


def test_s3_backed_api(s3_server, monkeypatch: pytest.MonkeyPatch, data: ObjectStore) -> None:
    fake_aws_env(monkeypatch, s3_server.endpoint_url)
    s3 = open_store(f"s3://{s3_server.bucket}/api-{uuid.uuid4().hex[:8]}")
    for obj in data.list(""):
        if not obj.key.startswith("_meta/"):
            s3.put_bytes(obj.key, data.get_bytes(obj.key))
    config = ApiConfig(storage_uri=s3.uri, api_keys=(KEY,), timeout=TIMEOUT, workers=1)
    with Server(create_app(config)) as server, server.client() as client:
        rows = client.post("/query", json={"sql": "SELECT count(*), min(name) FROM npm_package"}).json()["rows"]
        assert rows == [[PACKAGES, "pkg-00"]]
        refused = client.post("/query", json={"sql": "SELECT * FROM read_text('/etc/passwd')"})
        assert refused.status_code == 400 and PASSWD_MARK not in refused.text
        assert client.get("/catalog/npm").json()["record_count"] == PACKAGES + UPDATED
        assert_healthy(client)


# -- `scrapy serve` --------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            children.append(int(status.parent.name))
    return children


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_scrapy_serve_refuses_to_start_without_a_key(workspace) -> None:
    result = workspace.scrapy("serve", "--port", str(_free_port()), check=False, timeout=60)
    assert result.returncode != 0
    assert "QUERY_API_KEYS" in result.stderr and "--insecure-no-auth" in result.stderr


@pytest.mark.slow
def test_scrapy_serve(workspace) -> None:
    write_npm(open_store(str(workspace.data)), f"sqlite:///{workspace.path / 'meta.db'}")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "scrapy", "serve", "--port", str(port)],
        cwd=workspace.path,
        env={**workspace.env, "QUERY_API_KEYS": KEY, "QUERY_ROW_CAP": "3", "QUERY_TIMEOUT_SECONDS": "2"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": KEY}, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, "scrapy serve did not start"
                time.sleep(0.2)
            body = client.post("/query", json={"sql": "SELECT name FROM npm_package ORDER BY name"}).json()
            assert body["rows"] == [["pkg-00"], ["pkg-01"], ["pkg-02"]] and body["truncated"] is True
            assert client.post("/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}).status_code == 400
            assert client.post("/query", json={"sql": ENDLESS[0]}).status_code == 504
            assert client.get("/namespaces", headers={"X-API-Key": WRONG_KEY}).status_code == 401
            assert client.get("/health", headers={"X-API-Key": WRONG_KEY}).json() == {"status": "ok"}
            assert "server" not in client.get("/health").headers
            workers = _children(process.pid)
            assert len(workers) == 2
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert process.returncode in (0, -signal.SIGTERM), err[-2000:]
    assert "Application shutdown complete" in err
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "query workers outlived the server"
    assert KEY not in out and KEY not in err and WRONG_KEY not in err


# -- fairness and the access log -------------------------------------------------------------------


def test_one_key_cannot_take_every_worker(data: ObjectStore) -> None:
    """Two workers: a key gets one at a time (429 beyond it), so another key is still answered. The slow
    query runs 6 s (timeout 20 s), a window wide enough on a loaded machine."""
    config = ApiConfig(storage_uri=data.uri, api_keys=(KEY, OTHER_KEY), timeout=20, workers=2)
    with (
        Server(create_app(config, store=data)) as server,
        server.client(KEY) as first,
        server.client(OTHER_KEY) as second,
        ThreadPoolExecutor(1) as pool,
    ):
        for _ in range(20):  # until the slow query holds the key's share (it runs 6 s)
            slow = pool.submit(first.post, "/query", json={"sql": "SELECT sleep_ms(6000) AS slept"})
            time.sleep(0.5)
            if not slow.done():
                break
        else:
            pytest.fail("the slow query never started")
        refused = first.post("/query", json={"sql": "SELECT 1"})
        assert refused.status_code == 429 and refused.json()["error"] == "busy"
        assert refused.headers["Retry-After"] == "1"
        other = second.post("/query", json={"sql": "SELECT 42 AS answer"})
        assert other.status_code == 200 and other.json()["rows"] == [[42]]
        assert slow.result().status_code == 200
        assert first.post("/query", json={"sql": "SELECT 1"}).status_code == 200  # the share is given back


def test_query_strings_never_reach_the_access_log() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/namespaces?api_key={KEY}&x=1", "1.1", 401), None,
    )  # fmt: skip
    for handler_filter in logging.getLogger("uvicorn.access").filters:
        handler_filter.filter(record)
    assert KEY not in record.getMessage() and "/namespaces?…" in record.getMessage()
