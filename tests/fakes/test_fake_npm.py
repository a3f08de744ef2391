"""Tests of the loopback npm fake itself (shapes, faults, feed semantics, determinism, standalone mode)."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.fakes.npm import (
    CORGI_CONTENT_TYPE,
    CORGI_VERSION_KEYS,
    FAULT_NAMES,
    FakeNpmRegistry,
    fake_npm,  # noqa: F401  (fixture, used by name below)
    package_index,
    package_name,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
REV_RE = re.compile(r"^\d+-[0-9a-f]{32}$")


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> tuple[int, Any, bytes]:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def changes(fake: FakeNpmRegistry, query: str) -> tuple[int, dict[str, Any]]:
    status, _, body = get(f"{fake.changes_url}?{query}")
    return status, json.loads(body)


@pytest.fixture(scope="module")
def shared() -> Iterator[FakeNpmRegistry]:
    """Read-only tests share one server."""
    with FakeNpmRegistry(packages=60, seed=3).serve() as fake:
        yield fake


@pytest.fixture
def fresh() -> Iterator[FakeNpmRegistry]:
    """Tests that mutate state or consume one-shot faults get their own."""
    with FakeNpmRegistry(packages=30, seed=5, slow_delay=0.3).serve() as fake:
        yield fake


# ------------------------------------------------------------------------------------------ packuments


def test_urls(shared: FakeNpmRegistry) -> None:
    assert shared.registry_url.startswith("http://127.0.0.1:") and shared.registry_url.endswith("/")
    assert shared.changes_url == shared.registry_url + "replicate/registry/_changes"


def test_full_packument_shape_and_headers(shared: FakeNpmRegistry) -> None:
    status, headers, body = get(shared.registry_url + "pkg-000001")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["ETag"] and headers["Last-Modified"] and "max-age" in headers["Cache-Control"]
    doc = json.loads(body)
    for key in ("_id", "_rev", "name", "description", "dist-tags", "versions", "time", "maintainers"):
        assert key in doc, key
    for key in ("repository", "homepage", "bugs", "keywords", "readme", "readmeFilename", "users"):
        assert key in doc, key
    assert doc["_id"] == doc["name"] == "pkg-000001"
    assert REV_RE.match(doc["_rev"])
    latest = doc["dist-tags"]["latest"]
    assert latest in doc["versions"]
    assert {"created", "modified", latest} <= set(doc["time"])
    for version, m in doc["versions"].items():
        assert m["name"] == "pkg-000001" and m["version"] == version
        assert m["_id"] == f"pkg-000001@{version}"
        assert m["repository"]["type"] == "git"
        assert re.fullmatch(r"git\+https://github\.com/[\w-]+/pkg-000001\.git", m["repository"]["url"])
        assert m["dist"]["tarball"] == f"{shared.registry_url}pkg-000001/-/pkg-000001-{version}.tgz"
        assert re.fullmatch(r"[0-9a-f]{40}", m["dist"]["shasum"])
        assert m["dist"]["integrity"].startswith("sha512-")
        assert {"fileCount", "unpackedSize"} <= set(m["dist"])
        assert "license" in m or "licenses" in m
        assert m["maintainers"] and "_npmUser" in m


def test_license_and_author_variants_occur() -> None:
    fake = FakeNpmRegistry(packages=400, seed=1)
    seen: set[str] = set()
    for name in fake.package_names():
        doc = fake.packument(name)
        assert doc is not None
        m = next(iter(doc["versions"].values()))
        seen.add("licenses" if "licenses" in m else type(m["license"]).__name__)
        seen.add("author-" + type(m.get("author")).__name__)
        if any("deprecated" in v for v in doc["versions"].values()):
            seen.add("deprecated")
    assert {"str", "dict", "licenses", "author-dict", "author-str", "deprecated"} <= seen


def test_scoped_name_all_encodings(shared: FakeNpmRegistry) -> None:
    name = package_name(7)
    assert name.startswith("@scope-") and package_index(name) == 7
    scope, base = name.split("/")
    bodies = [
        get(shared.registry_url + path)
        for path in (f"{scope}%2F{base}", f"{scope}%2f{base}", f"{scope}/{base}", f"%40{scope[1:]}%2F{base}")
    ]
    assert all(status == 200 for status, _, _ in bodies)
    assert len({body for _, _, body in bodies}) == 1
    doc = json.loads(bodies[0][2])
    assert doc["name"] == name
    latest = doc["versions"][doc["dist-tags"]["latest"]]
    assert latest["dist"]["tarball"].endswith(f"{name}/-/{base}-{latest['version']}.tgz")
    assert sum(1 for n in shared.package_names() if n.startswith("@")) == 6  # 10 % of 60


def test_abbreviated_form(shared: FakeNpmRegistry) -> None:
    accept = f"{CORGI_CONTENT_TYPE}; q=1.0, application/json; q=0.8, */*"
    status, headers, body = get(shared.registry_url + "pkg-000002", {"Accept": accept})
    assert status == 200
    assert headers["Content-Type"] == CORGI_CONTENT_TYPE
    doc = json.loads(body)
    assert set(doc) == {"name", "modified", "dist-tags", "versions"}
    assert doc["dist-tags"]["latest"] in doc["versions"]
    for m in doc["versions"].values():
        assert set(m) <= set(CORGI_VERSION_KEYS)
        assert {"name", "version", "dist"} <= set(m)
    full = json.loads(get(shared.registry_url + "pkg-000002")[2])
    assert len(body) < len(json.dumps(full))
    assert headers["ETag"] != get(shared.registry_url + "pkg-000002")[1]["ETag"]


def test_conditional_get_and_version_route(shared: FakeNpmRegistry) -> None:
    _, headers, body = get(shared.registry_url + "pkg-000003")
    status, _, again = get(shared.registry_url + "pkg-000003", {"If-None-Match": headers["ETag"]})
    assert status == 304 and again == b""
    doc = json.loads(body)
    status, _, manifest = get(shared.registry_url + "pkg-000003/latest")
    assert status == 200 and json.loads(manifest)["version"] == doc["dist-tags"]["latest"]
    assert get(shared.registry_url + "pkg-000003/99.99.99")[0] == 404


def test_not_found(shared: FakeNpmRegistry) -> None:
    for path in ("no-such-package", "pkg-000060", "pkg-000001/-/pkg-000001-1.0.0.tgz"):
        status, headers, body = get(shared.registry_url + path)
        assert status == 404 and json.loads(body) == {"error": "Not found"}
        assert headers["Content-Type"] == "application/json"


# ------------------------------------------------------------------------------------------ faults


def test_fault_names() -> None:
    assert set(FakeNpmRegistry.fault_names()) == set(FAULT_NAMES)
    assert len(FAULT_NAMES) == 10 and all(n.startswith("fault-") for n in FAULT_NAMES)


def test_fault_not_found_gone_unpublished_malformed(fresh: FakeNpmRegistry) -> None:
    url = fresh.registry_url
    status, _, body = get(url + "fault-not-found")
    assert status == 404 and json.loads(body) == {"error": "Not found"}
    assert get(url + "fault-gone")[0] == 410
    status, _, body = get(url + "fault-unpublished")
    doc = json.loads(body)
    assert status == 200 and set(doc) == {"_id", "name", "time"}
    assert "versions" not in doc and doc["time"]["unpublished"]["versions"]
    assert {"created", "modified"} <= set(doc["time"])
    status, _, body = get(url + "fault-malformed")
    assert status == 200
    with pytest.raises(ValueError):
        json.loads(body)


def test_fault_rate_limited_twice_then_ok(fresh: FakeNpmRegistry) -> None:
    for _ in range(2):
        status, headers, _ = get(fresh.registry_url + "fault-rate-limited")
        assert status == 429 and headers["Retry-After"] == "1"
    status, _, body = get(fresh.registry_url + "fault-rate-limited")
    assert status == 200 and json.loads(body)["name"] == "fault-rate-limited"
    fresh.reset_faults()
    assert get(fresh.registry_url + "fault-rate-limited")[0] == 429


def test_fault_unavailable_once(fresh: FakeNpmRegistry) -> None:
    status, headers, _ = get(fresh.registry_url + "fault-unavailable")
    assert status == 503 and headers["Retry-After"] == "1"
    assert get(fresh.registry_url + "fault-unavailable")[0] == 200


def test_fault_slow(fresh: FakeNpmRegistry) -> None:
    assert fresh.slow_delay == 0.3
    start = time.monotonic()
    status, _, _ = get(fresh.registry_url + "fault-slow")
    assert status == 200 and time.monotonic() - start >= 0.3
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        get(fresh.registry_url + "fault-slow", timeout=0.1)


def test_fault_truncated(fresh: FakeNpmRegistry) -> None:
    with (
        pytest.raises(http.client.IncompleteRead),
        urllib.request.urlopen(fresh.registry_url + "fault-truncated", timeout=5) as resp,
    ):
        assert resp.status == 200 and int(resp.headers["Content-Length"]) > 0
        resp.read()


def test_fault_huge(fresh: FakeNpmRegistry) -> None:
    status, headers, body = get(fresh.registry_url + "fault-huge", timeout=30)
    assert status == 200 and len(body) > 10 * 1024 * 1024
    assert int(headers["Content-Length"]) == len(body)
    doc = orjson.loads(body)
    assert doc["name"] == "fault-huge" and doc["dist-tags"]["latest"] in doc["versions"]


def test_fault_stale_then_current() -> None:
    with FakeNpmRegistry(packages=5, include_faults_in_changes=True).serve() as fake:
        _, page = changes(fake, "since=0")
        announced = {r["id"]: r["changes"][0]["rev"] for r in page["results"]}
        assert set(FAULT_NAMES) <= set(announced)
        n = int(announced["fault-stale"].split("-")[0])
        first = json.loads(get(fake.registry_url + "fault-stale")[2])["_rev"]
        second = json.loads(get(fake.registry_url + "fault-stale")[2])["_rev"]
        assert first.startswith(f"{n - 1}-") and REV_RE.match(first)
        assert second == announced["fault-stale"]


def test_faults_not_in_feed_by_default(shared: FakeNpmRegistry) -> None:
    _, page = changes(shared, "since=0&limit=10000")
    ids = [r["id"] for r in page["results"]]
    assert ids == list(shared.package_names())
    assert not set(ids) & set(FAULT_NAMES)


def test_extra_adds_and_overrides() -> None:
    custom = {"name": "left-pad", "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {"version": "1.0.0"}}}
    override = {"description": "overridden", "versions": {}, "dist-tags": {}}
    fake = FakeNpmRegistry(packages=3, extra={"left-pad": custom, "pkg-000001": override})
    doc = fake.packument("left-pad")
    assert doc is not None and doc["versions"] == custom["versions"] and REV_RE.match(doc["_rev"])
    overridden = fake.packument("pkg-000001")
    assert overridden is not None and overridden["description"] == "overridden"
    ids = [r["id"] for r in fake.changes_page(0)["results"]]
    assert ids[-2:] == ["left-pad", "pkg-000001"]


def test_global_knobs_and_request_log(fresh: FakeNpmRegistry) -> None:
    fresh.rate_limit_every = 3
    statuses = [get(fresh.registry_url + "pkg-000001")[0] for _ in range(6)]
    assert statuses == [200, 200, 429, 200, 200, 429]
    fresh.rate_limit_every = None
    fresh.latency = 0.2
    start = time.monotonic()
    assert get(fresh.registry_url + "pkg-000002")[0] == 200
    assert time.monotonic() - start >= 0.2
    fresh.latency = 0.0
    changes(fresh, "since=0&limit=1")
    assert fresh.requests["pkg-000001"] == 6 and fresh.requests["_changes"] == 1
    assert fresh.total_requests == 8
    fresh.reset_counters()
    assert fresh.total_requests == 0 and not fresh.requests


def test_pytest_fixture(fake_npm: FakeNpmRegistry) -> None:  # noqa: F811
    assert get(fake_npm.registry_url + "pkg-000000")[0] == 200


# ------------------------------------------------------------------------------------------ _changes


def test_changes_paging(shared: FakeNpmRegistry) -> None:
    since, seen, pages = 0, [], 0
    while True:
        status, page = changes(shared, f"since={since}&limit=25")
        assert status == 200 and set(page) == {"results", "last_seq", "pending"}
        pages += 1
        if not page["results"]:
            break
        seen += page["results"]
        assert page["last_seq"] == page["results"][-1]["seq"]
        assert page["pending"] == 60 - len(seen)
        since = page["last_seq"]
    assert pages == 4 and page == {"results": [], "last_seq": 60, "pending": 0}
    assert [r["seq"] for r in seen] == list(range(1, 61))
    first = seen[0]
    assert set(first) == {"seq", "id", "changes"} and REV_RE.match(first["changes"][0]["rev"])
    assert first["changes"][0]["rev"] == json.loads(get(shared.registry_url + first["id"])[2])["_rev"]
    _, page = changes(shared, "since=now")
    assert page == {"results": [], "last_seq": 60, "pending": 0}
    _, page = changes(shared, "since=0")  # default limit 1000
    assert len(page["results"]) == 60


def test_changes_limit_cap() -> None:
    fake = FakeNpmRegistry(packages=12_000)
    with fake.serve():
        _, page = changes(fake, "since=0&limit=50000")
    assert len(page["results"]) == 10_000 and page["pending"] == 2_000 and page["last_seq"] == 10_000


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("include_docs=true", "include_docs is not supported"),
        ("feed=continuous", None),
        ("feed=longpoll", None),
        ("since=abc", None),
        ("since=3-g1AAAA", None),
        ("since=-1", None),
        ("limit=ten", None),
        ("limit=-5", None),
        ("since=1_000", None),
    ],
)
def test_changes_bad_requests(shared: FakeNpmRegistry, query: str, reason: str | None) -> None:
    status, body = changes(shared, query)
    assert status == 400 and body["error"] == "bad_request"
    if reason:
        assert body["reason"] == reason


def test_publish_and_delete(fresh: FakeNpmRegistry) -> None:
    base = fresh.last_seq
    assert base == 30
    rev_new = fresh.publish("brand-new")
    assert rev_new.startswith("1-")
    old_rev = json.loads(get(fresh.registry_url + "pkg-000004")[2])["_rev"]
    rev_up = fresh.publish("pkg-000004")
    assert int(rev_up.split("-")[0]) == int(old_rev.split("-")[0]) + 1
    assert json.loads(get(fresh.registry_url + "pkg-000004")[2])["_rev"] == rev_up
    rev_custom = fresh.publish("pkg-000004", {"dist-tags": {"latest": "9.0.0"}, "versions": {"9.0.0": {}}})
    doc = json.loads(get(fresh.registry_url + "pkg-000004")[2])
    assert doc["_rev"] == rev_custom and doc["dist-tags"]["latest"] == "9.0.0"
    rev_del = fresh.delete("pkg-000005")
    assert get(fresh.registry_url + "pkg-000005")[0] == 404
    with pytest.raises(KeyError):
        fresh.delete("pkg-000005")
    _, page = changes(fresh, f"since={base}")
    assert [(r["seq"], r["id"], r["changes"][0]["rev"], r.get("deleted", False)) for r in page["results"]] == [
        (31, "brand-new", rev_new, False),
        (32, "pkg-000004", rev_up, False),
        (33, "pkg-000004", rev_custom, False),
        (34, "pkg-000005", rev_del, True),
    ]
    assert page["last_seq"] == 34 and page["pending"] == 0
    assert json.loads(get(fresh.registry_url + "brand-new")[2])["_rev"] == rev_new


def test_reset_seq() -> None:
    with FakeNpmRegistry(packages=20, first_seq=5_000_000).serve() as fake:
        _, page = changes(fake, "since=0&limit=5")
        assert [r["seq"] for r in page["results"]] == list(range(5_000_000, 5_000_005))
        fake.publish("pkg-000003")
        old_max = fake.last_seq
        assert old_max == 5_000_020
        new_max = fake.reset_seq()
        assert new_max == 20 == fake.last_seq  # compacted: one change per package
        _, page = changes(fake, f"since={old_max}")
        assert page == {"results": [], "last_seq": 20, "pending": 0}
        _, page = changes(fake, "since=0")
        assert [r["seq"] for r in page["results"]] == list(range(1, 21))
        assert page["results"][-1]["id"] == "pkg-000003"
        assert len({r["id"] for r in page["results"]}) == 20
        assert fake.reset_seq(offset=1000) == 1020
        _, page = changes(fake, "since=0&limit=1")
        assert page["results"][0]["seq"] == 1001


# ------------------------------------------------------------------------------------------ data


def test_determinism() -> None:
    a, b = FakeNpmRegistry(packages=50, seed=7), FakeNpmRegistry(packages=50, seed=7)
    c = FakeNpmRegistry(packages=50, seed=8)
    names = [package_name(i) for i in range(0, 50, 3)]
    assert [a.packument_bytes(n) for n in names] == [b.packument_bytes(n) for n in names]
    assert a.changes_page(0) == b.changes_page(0)
    assert a.packument_bytes(names[0]) != c.packument_bytes(names[0])


def test_realistic_size_distribution() -> None:
    fake = FakeNpmRegistry(packages=100_000, seed=1, size_profile="realistic")
    sizes = [fake.body_size(package_name(i)) for i in range(0, 100_000, 50)]
    assert len(sizes) == 2000
    assert 7_000 <= statistics.median(sizes) <= 14_000
    assert max(sizes) > 200_000
    assert any(fake.body_size(package_name(i)) > 1_000_000 for i in range(10_000))


# ------------------------------------------------------------------------------------------ standalone


def test_standalone_process() -> None:
    cmd = [sys.executable, "-m", "tests.fakes.npm", "--port", "0", "--packages", "20", "--seed", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"registry_url", "changes_url", "pid"} and info["pid"] == proc.pid
        assert info["registry_url"].startswith("http://127.0.0.1:")
        status, _, body = get(info["registry_url"] + "pkg-000001")
        assert status == 200 and json.loads(body)["name"] == "pkg-000001"
        status, body = 0, b""
        status, _, body = get(info["changes_url"] + "?since=0&limit=5")
        assert status == 200 and json.loads(body)["pending"] == 15
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_only_loopback() -> None:
    with pytest.raises(ValueError), FakeNpmRegistry(packages=1).serve(host="0.0.0.0"):
        pass


# ------------------------------------------------------------------------------------------ load (opt-in)


def _proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FAKE_NPM_LOADTEST"), reason="set FAKE_NPM_LOADTEST=<count> to run")
def test_load_realistic() -> None:
    """Serve N distinct realistic packuments from a standalone fake; check its peak RSS and CPU/request."""
    import asyncio

    import aiohttp

    count = int(os.environ["FAKE_NPM_LOADTEST"])
    cmd = [sys.executable, "-m", "tests.fakes.npm", "--packages", str(count), "--size-profile", "realistic"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        cpu0 = _proc_cpu_seconds(proc.pid)

        async def crawl(names: list[str]) -> tuple[int, int, list[int]]:
            queue = iter(names)
            total, errors, sizes = 0, 0, []
            conn = aiohttp.TCPConnector(limit=64)
            async with aiohttp.ClientSession(info["registry_url"], connector=conn) as session:

                async def worker() -> None:
                    nonlocal total, errors
                    for name in queue:
                        async with session.get("/" + name.replace("/", "%2F")) as resp:
                            body = await resp.read()
                            errors += resp.status != 200
                            total += len(body)
                            sizes.append(len(body))

                await asyncio.gather(*(worker() for _ in range(64)))
            return total, errors, sizes

        names = [package_name(i) for i in range(count)]
        start = time.monotonic()
        total, errors, sizes = asyncio.run(crawl(names))
        wall = time.monotonic() - start
        cpu = _proc_cpu_seconds(proc.pid) - cpu0
        rss = _proc_peak_rss_mb(proc.pid)
        print(
            f"\n{count} packuments, {total / 1e6:.0f} MB in {wall:.1f} s ({count / wall:.0f} req/s); "
            f"fake CPU {cpu:.1f} s = {cpu / count * 1e3:.3f} ms/request; fake peak RSS {rss:.0f} MB; "
            f"median body {statistics.median(sizes) / 1e3:.1f} KB"
        )
        assert errors == 0
        assert rss < 300
        assert cpu / count < 0.5e-3

        # Second pass over bodies of 9-11 KB only: the per-request cost the brief bounds.
        local = FakeNpmRegistry(packages=count, size_profile="realistic")
        tenk = [n for n in names[:50_000] if 9_000 <= local.body_size(n) <= 11_000][:20_000]
        cpu0 = _proc_cpu_seconds(proc.pid)
        start = time.monotonic()
        total, errors, sizes = asyncio.run(crawl(tenk))
        wall = time.monotonic() - start
        cpu = _proc_cpu_seconds(proc.pid) - cpu0
        print(
            f"{len(tenk)} bodies of 9-11 KB in {wall:.1f} s ({len(tenk) / wall:.0f} req/s); "
            f"fake CPU {cpu / len(tenk) * 1e3:.3f} ms/request"
        )
        assert errors == 0 and len(tenk) > 1000
        assert cpu / len(tenk) < 0.5e-3
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
